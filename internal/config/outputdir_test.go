package config_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

// TestOutputDir: outputDir comes from the file, with {port} per instance,
// is never shown on the API and survives a servers list replaced there.
func TestOutputDir(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
servers:
  - id: box
    ip: 10.0.0.5
    ports: "8001-8002"
    outputDir: /mnt/comfy-{port}/output
`)
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	inst := c.Instances()
	if inst[0].OutputDir != "/mnt/comfy-8001/output" || inst[1].OutputDir != "/mnt/comfy-8002/output" {
		t.Errorf("instance output dirs = %q, %q", inst[0].OutputDir, inst[1].OutputDir)
	}
	b, _ := json.Marshal(c.Public())
	if strings.Contains(string(b), "/mnt/") {
		t.Errorf("GET /api/config shows the output folder: %s", b)
	}
	got, err := c.Merge([]byte(`{"servers":[{"id":"box","ip":"10.0.0.5","ports":[8001],"labels":{"gpu":"t4"}},{"id":"other","ip":"10.0.0.6","ports":[8001]}]}`))
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if got.Servers[0].OutputDir != "/mnt/comfy-{port}/output" || got.Servers[1].OutputDir != "" {
		t.Errorf("after PUT servers, output dirs = %q, %q; want the file's for box, none for other", got.Servers[0].OutputDir, got.Servers[1].OutputDir)
	}

	c.Servers[0].OutputDir = "relative/output"
	wantFieldError(t, c.Validate(), "servers[0].outputDir", "absolute path")
}
