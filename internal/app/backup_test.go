package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// TestBackupMidRunRestores takes a backup while tasks run, complete and
// report progress, restores it into a new data dir, and finds every task
// submitted before the backup there, those completed before it still
// completed with their outputs.
func TestBackupMidRunRestores(t *testing.T) {
	t.Parallel()
	const n = 16
	e := apptest.Start(t, apptest.Options{Instances: 2, Sim: comfysim.Options{StepDelay: 5 * time.Millisecond}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	ids := make([]string, n)
	for i := range ids {
		// The first two are short, the rest long enough to be running
		// still when the first two have completed, however slowly the
		// submits go.
		steps := 100
		if i < 2 {
			steps = 2
		}
		ids[i] = submit(e, admin, map[string]any{"workflow": t2i(steps, fmt.Sprintf("backup/%d", i))}).ID
	}
	e.Eventually(30*time.Second, "some tasks completed while others run", func() bool {
		var o struct{ CompletedTasks, RunningTasks int }
		e.Do("GET", "/api/monitor/overview", admin, nil).Into(t, &o)
		return o.CompletedTasks >= 2 && o.RunningTasks >= 1
	})
	before := map[string]taskView{}
	for _, id := range ids {
		before[id] = getTask(e, admin, id)
	}
	out := filepath.Join(t.TempDir(), "snapshot.db")
	if err := app.Backup(t.Context(), e.Config, out); err != nil {
		t.Fatalf("backup while serving: %v", err)
	}
	if fi, err := os.Stat(out); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", fi.Mode().Perm())
	}
	if err := app.Backup(t.Context(), e.Config, out); err == nil {
		t.Error("a second backup over the first was accepted")
	}
	e.Stop()

	// Restore: the snapshot becomes the database of a new data dir.
	dir := t.TempDir()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "comfyfleet.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := apptest.Start(t, apptest.Options{Instances: 2, DataDir: dir})
	admin = r.Login(apptest.AdminUser, apptest.AdminPass)
	completed := 0
	for _, id := range ids {
		got := getTask(r, admin, id)
		if got.ID != id {
			t.Errorf("task %s is missing from the restored store", id)
			continue
		}
		if was := before[id]; was.Status == "completed" {
			completed++
			if got.Status != "completed" || got.Result == nil || len(got.Result.Outputs) == 0 {
				t.Errorf("task %s completed before the backup, restored as %s: %+v", id, got.Status, got.Result)
			}
		}
	}
	if completed < 2 {
		t.Errorf("%d tasks completed before the backup, want at least 2", completed)
	}
}
