package config_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

const examplePath = "../../config.example.yaml"

func TestExampleLoadsAndValidates(t *testing.T) {
	t.Parallel()
	c, err := config.Load(examplePath, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(): %v", err)
	}
	// The example shows the defaults: only its servers differ.
	want := config.Default()
	want.Servers = []config.Server{
		{ID: "server-1", Name: "主服务器", IP: "127.0.0.1", Ports: config.Ports{8001, 8002}},
		{ID: "gpu-box", Name: "GPU box", IP: "192.168.1.20", Ports: config.Ports{8001, 8002, 8003, 8004},
			Labels: config.Labels{"gpu": "a100", "pool": "video"}},
	}
	if diff := cmp.Diff(want, c, cmp.Transformer("empty", func(u []config.User) []config.User {
		if len(u) == 0 {
			return nil
		}
		return u
	})); diff != "" {
		t.Errorf("example differs from the defaults (-want +got):\n%s", diff)
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"servers", "id", "name", "ip", "ports", "labels", "users", "username", "role", "passwordHash"}
	for _, k := range config.Keys() {
		names = append(names, regexp.MustCompile(`[^.]*$`).FindString(k))
	}
	for _, n := range names {
		if n == "demo" {
			n = "COMFYFLEET_DEMO"
		} else {
			n = `(?m)^\s*(#\s*)?(- )?` + n + ":"
		}
		if !regexp.MustCompile(n).Match(b) {
			t.Errorf("config.example.yaml does not document %q", n)
		}
	}
}
