package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
)

// TestConfigReset: "comfyfleet config reset --data DIR" deletes the runtime
// config saved in the data dir's SQLite store, offline.
func TestConfigReset(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "comfyfleet.db")
	st, err := sqlitestore.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ConfigPut(t.Context(), []byte(`{"server":{"maxBodyBytes":1}}`)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	if err := run(t.Context(), []string{"config", "reset", "--data", dir}); err != nil {
		t.Fatalf("config reset: %v", err)
	}
	if got := runtimeDoc(t.Context(), t, db); got != "{}" {
		t.Errorf("runtime config after reset = %s, want {}", got)
	}

	err = run(t.Context(), []string{"config", "reset", "--data", filepath.Join(dir, "elsewhere")})
	if err == nil || !strings.Contains(err.Error(), "no SQLite database") {
		t.Errorf("reset of a data dir without a database: %v, want an error saying so", err)
	}
}

func runtimeDoc(ctx context.Context, t *testing.T, path string) string {
	t.Helper()
	st, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	doc, err := st.ConfigGet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}
