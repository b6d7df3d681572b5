package app

import (
	"path/filepath"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
)

// TestReadinessConfigInvalid: a live config that no longer validates takes
// the replica out of service, and the answer names the check, not the
// error's text.
func TestReadinessConfigInvalid(t *testing.T) {
	st, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "ready.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.Config{DataDir: t.TempDir()}
	cfg.Auth.AdminPassword = "correct horse battery"
	cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := &App{store: st, cfg: newConfigService(cfg, cfg, st, nil)}
	if ready, checks := a.readiness(t.Context()); !ready || checks["config"] != "ok" {
		t.Fatalf("valid config: ready %v %v", ready, checks)
	}
	bad := cfg
	bad.Server.MaxBodyBytes = 1 // under config.MinBodyBytes
	a.cfg.cur = bad
	ready, checks := a.readiness(t.Context())
	if ready || checks["config"] != "invalid" || checks["store"] != "ok" {
		t.Errorf("invalid config: ready %v %v", ready, checks)
	}
}
