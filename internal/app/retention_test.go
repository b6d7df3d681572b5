package app_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/client"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TestRetentionPrunesOldAndNothingYounger: a gateway with retention.tasks
// and retention.files deletes the old finished tasks with their files
// (records and bytes) and the old uploads, and keeps the young ones, the
// pinned ones and a pending task older than the retention. Both stores.
func TestRetentionPrunesOldAndNothingYounger(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		dir := t.TempDir()
		configure := func(c *config.Config) {
			c.Servers = nil // the pending task stays pending
			c.Retention.Tasks = config.Duration(24 * time.Hour)
			c.Retention.Files = config.Duration(24 * time.Hour)
			c.Retention.Interval = config.Millis(time.Second)
		}
		var st store.Store
		var err error
		if driver == "redis" {
			url := redistest.URL(t)
			prefix := redistest.Prefix(t, url)
			redis := redisConfig(url, prefix)
			c := configure
			configure = func(cfg *config.Config) { c(cfg); redis(cfg) }
			st, err = redisstore.Open(t.Context(), url, redisstore.WithPrefix(prefix))
		} else {
			st, err = sqlitestore.Open(t.Context(), filepath.Join(dir, "comfyfleet.db"))
		}
		if err != nil {
			t.Fatal(err)
		}
		bl, err := blob.NewDisk(filepath.Join(dir, "files"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		old, young := now.Add(-72*time.Hour), now.Add(-time.Hour)
		seed := func(id string, created, finished time.Time, files ...string) {
			t.Helper()
			ctx := context.Background()
			if _, err := st.TaskInsert(ctx, &store.TaskInsertParams{ID: id, Owner: apptest.User, Workflow: []byte(`{}`), Now: created}); err != nil {
				t.Fatal(err)
			}
			if !finished.IsZero() {
				if _, err := st.TaskFinish(ctx, &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusPending},
					To: task.StatusCancelled, Now: finished}); err != nil {
					t.Fatal(err)
				}
			}
			for _, fid := range files {
				seedFile(t, st, bl, fid, id, finished)
			}
		}
		seed("11111111-0000-4000-8000-000000000001", old, old, "f1111111-0000-4000-8000-000000000001")
		seed("11111111-0000-4000-8000-000000000002", old, old, "f1111111-0000-4000-8000-000000000002")
		seed("22222222-0000-4000-8000-000000000001", old, young, "f2222222-0000-4000-8000-000000000001")
		seed("33333333-0000-4000-8000-000000000001", old, time.Time{})
		seed("44444444-0000-4000-8000-000000000001", old, old, "f4444444-0000-4000-8000-000000000001")
		if _, err := st.TaskPin(t.Context(), &store.PinParams{ID: "44444444-0000-4000-8000-000000000001", Pinned: true}); err != nil {
			t.Fatal(err)
		}
		seedFile(t, st, bl, "f5555555-0000-4000-8000-000000000001", "", old)   // an old upload
		seedFile(t, st, bl, "f6666666-0000-4000-8000-000000000001", "", young) // a young upload
		st.Close()

		e := apptest.Start(t, apptest.Options{Instances: 1, DataDir: dir, Configure: configure})
		admin := e.Login(apptest.AdminUser, apptest.AdminPass)
		user := e.Login(apptest.User, apptest.UserPass)
		gone := []string{"/api/tasks/11111111-0000-4000-8000-000000000001", "/api/tasks/11111111-0000-4000-8000-000000000002",
			"/api/files/f1111111-0000-4000-8000-000000000001", "/api/files/f1111111-0000-4000-8000-000000000002",
			"/api/files/f5555555-0000-4000-8000-000000000001"}
		e.Eventually(time.Minute, "the old tasks and files pruned", func() bool {
			for _, p := range gone {
				if e.Do("GET", p, user, nil).Status != http.StatusNotFound {
					return false
				}
			}
			return true
		})
		for _, id := range []string{"f1111111-0000-4000-8000-000000000001", "f5555555-0000-4000-8000-000000000001"} {
			if _, err := bl.Open(t.Context(), id); err == nil {
				t.Errorf("the bytes of pruned file %s are kept", id)
			}
		}
		for p, status := range map[string]string{
			"/api/tasks/22222222-0000-4000-8000-000000000001": "cancelled",
			"/api/tasks/33333333-0000-4000-8000-000000000001": "pending",
			"/api/tasks/44444444-0000-4000-8000-000000000001": "cancelled",
		} {
			r := e.Do("GET", p, user, nil)
			if r.Status != http.StatusOK || !strings.Contains(string(r.Body.Data), `"status":"`+status+`"`) {
				t.Errorf("GET %s: %d %s, want it kept, %s", p, r.Status, r.Raw, status)
			}
		}
		for _, id := range []string{"f2222222-0000-4000-8000-000000000001", "f4444444-0000-4000-8000-000000000001", "f6666666-0000-4000-8000-000000000001"} {
			if r := e.Do("GET", "/api/files/"+id, user, nil); r.Status != http.StatusOK {
				t.Errorf("file %s: %d, want it kept", id, r.Status)
			}
			if f, err := bl.Open(t.Context(), id); err != nil {
				t.Errorf("the bytes of kept file %s: %v", id, err)
			} else {
				f.Close()
			}
		}
		metrics := e.Do("GET", "/metrics", admin, nil)
		for _, line := range []string{`comfyfleet_retention_pruned_total{kind="task"} 2`, `comfyfleet_retention_pruned_total{kind="file"} 3`} {
			if !strings.Contains(string(metrics.Raw), line) {
				t.Errorf("metrics lack %s", line)
			}
		}
	})
}

// seedFile stores a file record and its bytes.
func seedFile(t *testing.T, st store.Store, bl blob.Store, id, taskID string, created time.Time) {
	t.Helper()
	ctx := context.Background()
	if _, err := bl.Put(ctx, id, strings.NewReader("bytes"), 0); err != nil {
		t.Fatal(err)
	}
	err := st.FileInsert(ctx, &file.File{ID: id, Owner: apptest.User, TaskID: taskID, Filename: "a.png",
		ContentType: "image/png", Size: 5, CreatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPinTasksAndFiles: the owner (or an admin) pins and unpins a task or
// a file and sees "pinned"; another user cannot, and gets the envelope's
// 404 as for any task they cannot see. Both stores.
func TestPinTasksAndFiles(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		configure := func(c *config.Config) { c.Servers = nil }
		if driver == "redis" {
			url := redistest.URL(t)
			configure = func(c *config.Config) { c.Servers = nil; redisConfig(url, redistest.Prefix(t, url))(c) }
		}
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: configure})
		alice := e.Login(apptest.User, apptest.UserPass)
		bob := e.Login(apptest.User2, apptest.User2Pass)
		admin := e.Login(apptest.AdminUser, apptest.AdminPass)
		taskID := submit(e, alice, map[string]any{"workflow": basic("pin/a")}).ID
		fileID := upload(e, alice, "input.png", pngBytes(t))

		pinned := func(r *apptest.Response) bool {
			t.Helper()
			var v struct{ Pinned bool }
			r.Into(t, &v)
			return v.Pinned
		}
		for _, res := range []struct{ path, notFound string }{
			{"/api/tasks/" + taskID, "task_not_found"},
			{"/api/files/" + fileID, "file_not_found"},
		} {
			if pinned(e.Do("GET", res.path, alice, nil)) {
				t.Errorf("%s is pinned from the start", res.path)
			}
			r := e.Do("POST", res.path+"/pin", bob, nil)
			wantStatus(t, "bob pins alice's", r, http.StatusNotFound, res.notFound)
			if r := e.Do("POST", res.path+"/pin", alice, nil); r.Status != http.StatusOK || !pinned(r) {
				t.Errorf("alice pins %s: %d %s", res.path, r.Status, r.Raw)
			}
			if !pinned(e.Do("GET", res.path, alice, nil)) {
				t.Errorf("%s is not pinned after the pin", res.path)
			}
			r = e.Do("DELETE", res.path+"/pin", bob, nil)
			wantStatus(t, "bob unpins alice's", r, http.StatusNotFound, res.notFound)
			if r := e.Do("DELETE", res.path+"/pin", admin, nil); r.Status != http.StatusOK || pinned(r) {
				t.Errorf("admin unpins %s: %d %s", res.path, r.Status, r.Raw)
			}
			if r := e.Do("POST", res.path+"/pin", admin, nil); r.Status != http.StatusOK || !pinned(r) {
				t.Errorf("admin pins %s: %d %s", res.path, r.Status, r.Raw)
			}
		}
		// The Go client does the same.
		c, err := client.New(e.URL())
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(alice)
		if tk, err := c.PinTask(t.Context(), taskID, false); err != nil || tk.Pinned || tk.ID != taskID {
			t.Errorf("client unpins the task: %+v, %v", tk, err)
		}
		if f, err := c.PinFile(t.Context(), fileID, false); err != nil || f.Pinned || f.ID != fileID {
			t.Errorf("client unpins the file: %+v, %v", f, err)
		}
		if tk, err := c.PinTask(t.Context(), taskID, true); err != nil || !tk.Pinned {
			t.Errorf("client pins the task: %+v, %v", tk, err)
		}
		c.SetToken(bob)
		if _, err := c.PinFile(t.Context(), fileID, true); err == nil {
			t.Error("bob pins alice's file with the client")
		}
		wantStatus(t, "pin an unknown task", e.Do("POST", "/api/tasks/nope/pin", alice, nil), http.StatusNotFound, "task_not_found")
		wantStatus(t, "pin an unknown file", e.Do("DELETE", "/api/files/nope/pin", alice, nil), http.StatusNotFound, "file_not_found")
	})
}

// TestRetentionChangesLive: retention set through PUT /api/config applies
// at once, without a restart, and shows in GET /api/config.
func TestRetentionChangesLive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := sqlitestore.Open(t.Context(), filepath.Join(dir, "comfyfleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-72 * time.Hour)
	const id = "77777777-0000-4000-8000-000000000001"
	if _, err := st.TaskInsert(t.Context(), &store.TaskInsertParams{ID: id, Owner: apptest.User, Workflow: []byte(`{}`), Now: old}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.TaskFinish(t.Context(), &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusPending},
		To: task.StatusCancelled, Now: old}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	e := apptest.Start(t, apptest.Options{Instances: 1, DataDir: dir, Configure: func(c *config.Config) { c.Servers = nil }})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	if r := e.Do("GET", "/api/tasks/"+id, admin, nil); r.Status != http.StatusOK {
		t.Fatalf("the old task without retention: %d %s", r.Status, r.Raw)
	}
	r := e.Do("PUT", "/api/config", admin, map[string]any{"retention": map[string]any{"tasks": "48h"}})
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body.Data), `"tasks":"48h"`) {
		t.Fatalf("PUT retention: %d %s", r.Status, r.Raw)
	}
	e.Eventually(time.Minute, "the old task pruned", func() bool {
		return e.Do("GET", "/api/tasks/"+id, admin, nil).Status == http.StatusNotFound
	})
	r = e.Do("PUT", "/api/config", admin, map[string]any{"retention": map[string]any{"files": "10m"}})
	wantStatus(t, "a file retention under an hour", r, http.StatusBadRequest, "")
}
