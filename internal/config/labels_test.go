package config_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

func TestLabelsLoad(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
servers:
  - id: gpu-box
    ip: 10.0.0.5
    ports: "8001-8002"
    labels: {gpu: a100, pool: video, vram: 80}
  - id: small
    ip: 10.0.0.6
    ports: 8001
`)
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := config.Labels{"gpu": "a100", "pool": "video", "vram": "80"}
	if diff := cmp.Diff(want, c.Servers[0].Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	inst := c.Instances()
	if len(inst) != 3 {
		t.Fatalf("Instances() = %d, want 3", len(inst))
	}
	for _, in := range inst[:2] {
		if diff := cmp.Diff(map[string]string(want), in.Labels); diff != "" {
			t.Errorf("instance %s labels (-want +got):\n%s", in.ID, diff)
		}
	}
	if inst[2].Labels != nil {
		t.Errorf("instance without labels has %v", inst[2].Labels)
	}
	inst[0].Labels["gpu"] = "changed"
	if c.Servers[0].Labels["gpu"] != "a100" || inst[1].Labels["gpu"] != "a100" {
		t.Errorf("instances share their labels map with the config or each other")
	}
}

func TestLabelsMergeAndPublic(t *testing.T) {
	t.Parallel()
	c := validConfig()
	got, err := c.Merge([]byte(`{"servers":[{"id":"new","ip":"10.0.0.9","ports":[9001],"labels":{"gpu":"t4"}}]}`))
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if diff := cmp.Diff(config.Labels{"gpu": "t4"}, got.Servers[0].Labels); diff != "" {
		t.Errorf("merged labels (-want +got):\n%s", diff)
	}
	b, err := json.Marshal(got.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"labels":{"gpu":"t4"}`) {
		t.Errorf("GET /api/config body lacks the labels: %s", b)
	}
	b, _ = json.Marshal(validConfig().Public())
	if strings.Contains(string(b), `"labels"`) {
		t.Errorf("a server without labels shows them: %s", b)
	}
}

func TestLabelsValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 64)
	tests := []struct {
		name   string
		labels config.Labels
		field  string
		msg    string
	}{
		{"empty key", config.Labels{"": "a"}, "servers[1].labels", "names must be"},
		{"space in key", config.Labels{"gpu model": "a100"}, "servers[1].labels.gpu model", "names must be"},
		{"long key", config.Labels{long: "a"}, "servers[1].labels." + long, "names must be"},
		{"empty value", config.Labels{"gpu": ""}, "servers[1].labels.gpu", "values must be"},
		{"slash in value", config.Labels{"gpu": "a/b"}, "servers[1].labels.gpu", "values must be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			c.Servers[1].Labels = tc.labels
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Validate() = %v, want %s: ...%s...", err, tc.field, tc.msg)
			}
		})
	}
	c := validConfig()
	c.Servers[0].Labels = config.Labels{"gpu": "a100", "node.pool_2": "video-1.5"}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() of good labels = %v", err)
	}
}

func TestLabelsDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`labels: [a, b]`, `labels: {gpu: [a]}`, `labels: {gpu: {x: 1}}`} {
		path := writeFile(t, "servers:\n  - id: s\n    ip: 10.0.0.1\n    ports: 1\n    "+body+"\n")
		if _, err := config.Load(path, nil); err == nil || !strings.Contains(err.Error(), "servers[0].labels") {
			t.Errorf("Load(%s) = %v, want an error naming servers[0].labels", body, err)
		}
	}
}
