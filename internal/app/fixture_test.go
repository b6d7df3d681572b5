package app_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
)

// writeFixture regenerates the fixture of the current release:
//
//	go test -run TestFixturesMigrate ./internal/app/ -args -write-fixture
//
// Keep the fixtures of earlier releases: each one is a database an
// upgrade must open.
var writeFixture = flag.Bool("write-fixture", false, "write testdata/fixture-<date>.db from the current schema")

// fixtureManifest says what a fixture database holds.
type fixtureManifest struct {
	Completed []string `json:"completed"`
	Cancelled string   `json:"cancelled"`
	Pending   string   `json:"pending"`
	FileID    string   `json:"fileId"`
	Interval  int      `json:"healthCheckInterval"`
}

// writeFixtureDB makes a small database through the API (completed,
// cancelled and pending tasks, an upload, a runtime config) and writes it
// with the backup command's snapshot, with a manifest of what it holds.
func writeFixtureDB(t *testing.T) {
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, admin)
	var m fixtureManifest
	m.FileID = upload(e, user, "input.png", pngBytes(t))
	for i := range 2 {
		v := submit(e, user, map[string]any{"workflow": basic(fmt.Sprintf("fixture/%d", i))})
		waitStatus(e, user, v.ID, "completed", 30*time.Second)
		m.Completed = append(m.Completed, v.ID)
	}
	inst := fmt.Sprintf("127.0.0.1:%d", apptest.Port(e.Sims[0].Addr()))
	if r := e.Do("PUT", "/api/instances/"+inst, admin, map[string]any{"enabled": false}); r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Raw)
	}
	m.Cancelled = submit(e, user, map[string]any{"workflow": basic("fixture/cancelled")}).ID
	if r := e.Do("DELETE", "/api/tasks/"+m.Cancelled, user, nil); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Raw)
	}
	m.Pending = submit(e, user, map[string]any{"workflow": basic("fixture/pending")}).ID
	m.Interval = 250
	if r := e.Do("PUT", "/api/config", admin, map[string]any{"healthCheck": map[string]any{"interval": m.Interval}}); r.Status != http.StatusOK {
		t.Fatalf("put config: %d %s", r.Status, r.Raw)
	}
	name := "fixture-" + time.Now().UTC().Format("2006-01-02")
	db := filepath.Join("testdata", name+".db")
	os.Remove(db)
	if err := app.Backup(t.Context(), e.Config, db); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join("testdata", name+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFixturesMigrate opens every committed fixture, databases made by
// earlier builds' schemas, with the current code: the gateway starts on a
// copy, migrates it, and serves what it held; its pending task runs.
func TestFixturesMigrate(t *testing.T) {
	if *writeFixture {
		writeFixtureDB(t)
	}
	t.Parallel()
	dbs, _ := filepath.Glob(filepath.Join("testdata", "fixture-*.db"))
	if len(dbs) == 0 {
		t.Fatal("no fixture database in testdata")
	}
	for _, db := range dbs {
		t.Run(filepath.Base(db), func(t *testing.T) {
			t.Parallel()
			var m fixtureManifest
			raw, err := os.ReadFile(db[:len(db)-len(".db")] + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			b, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "comfyfleet.db"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			e := apptest.Start(t, apptest.Options{Instances: 1, DataDir: dir})
			admin := e.Login(apptest.AdminUser, apptest.AdminPass)
			user := e.Login(apptest.User, apptest.UserPass)
			for _, id := range m.Completed {
				if v := getTask(e, user, id); v.Status != "completed" || v.Result == nil || len(v.Result.Outputs) == 0 {
					t.Errorf("completed task %s: %s %+v", id, v.Status, v.Result)
				}
			}
			if v := getTask(e, user, m.Cancelled); v.Status != "cancelled" {
				t.Errorf("cancelled task %s: %s", m.Cancelled, v.Status)
			}
			if r := e.Do("GET", "/api/files/"+m.FileID, user, nil); r.Status != http.StatusOK {
				t.Errorf("file %s: %d %s", m.FileID, r.Status, r.Raw)
			}
			var cfg struct {
				HealthCheck      struct{ Interval int }
				RuntimeOverrides []string `json:"runtimeOverrides"`
			}
			e.Do("GET", "/api/config", admin, nil).Into(t, &cfg)
			if cfg.HealthCheck.Interval != m.Interval || !slices.Contains(cfg.RuntimeOverrides, "healthCheck.interval") {
				t.Errorf("runtime config: %+v, want interval %d kept", cfg, m.Interval)
			}
			waitStatus(e, user, m.Pending, "completed", 30*time.Second)
		})
	}
}
