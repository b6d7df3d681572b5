package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

// TestDeployConfigsLoad: the gateway configs shipped for Compose and
// Kubernetes load and validate with the environment those deployments give
// the gateway, so `docker compose up` or `kubectl apply` does not start a
// gateway that exits on its config.
func TestDeployConfigsLoad(t *testing.T) {
	root := filepath.Join("..", "..")
	secretEnv := []string{"COMFYFLEET_AUTH_SECRET=0123456789abcdef0123456789abcdef", "COMFYFLEET_ADMIN_PASSWORD=correct horse battery"}

	compose := filepath.Join(root, "deploy", "compose", "comfyfleet.yaml")
	env := append([]string{"COMFYFLEET_STORE_DRIVER=redis", "COMFYFLEET_STORE_URL=redis://redis:6379/0"}, secretEnv...)
	loadValid(t, compose, env)

	// The Kubernetes ConfigMap's file, with the Secret's variables.
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "comfyfleet.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["comfyfleet.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "secret.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var secret struct {
		StringData map[string]string `yaml:"stringData"`
	}
	if err := yaml.Unmarshal(raw, &secret); err != nil {
		t.Fatal(err)
	}
	// As shipped, its placeholders are refused; replaced, the config loads.
	shipped := []string{"COMFYFLEET_SERVER_REPLICA_ID=comfyfleet-7d9f-abcde"}
	env = []string{"COMFYFLEET_SERVER_REPLICA_ID=comfyfleet-7d9f-abcde"}
	for k, v := range secret.StringData {
		if !strings.HasPrefix(k, "COMFYFLEET_") {
			t.Errorf("secret.yaml: %s is not a gateway variable", k)
		}
		shipped = append(shipped, k+"="+v)
		if !strings.Contains(v, "replace-with") {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, secretEnv...)
	if c, err := config.Load(path, shipped); err == nil {
		c.WithDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "placeholder") {
			t.Errorf("the Secret's placeholders as shipped: %v, want them refused", err)
		}
	}
	cfg := loadValid(t, path, env)
	if cfg.Store.Driver != "redis" || cfg.Files.Dir != "/var/lib/comfyfleet/files" {
		t.Errorf("kubernetes config: store %q, files %q", cfg.Store.Driver, cfg.Files.Dir)
	}
}

func loadValid(t *testing.T, path string, env []string) config.Config {
	t.Helper()
	cfg, err := config.Load(path, env)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}
