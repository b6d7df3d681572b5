package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
)

// TestResultURLsRenderedWhenRead: a result's file URLs are made from the
// file ids when the task is read, with the base URL of the gateway that
// answers, not kept from the one that collected them: after
// server.publicBaseUrl changes, every URL of an old result names the new
// base (and still downloads).
func TestResultURLsRenderedWhenRead(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	user := e.Login(apptest.User, apptest.UserPass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, user)
	v := submit(e, user, map[string]any{"workflow": basic("urls/one")})
	done := waitStatus(e, user, v.ID, "completed", 10*time.Second)
	if len(done.Result.Files) != 1 || !strings.HasPrefix(done.Result.Files[0], e.URL()+"/files/") {
		t.Fatalf("result files = %v, want one under %s", done.Result.Files, e.URL())
	}

	moved := "http://localhost:" + strings.Split(e.App().Addr(), ":")[1]
	r := e.Do("PUT", "/api/config", admin, map[string]any{"server": map[string]any{"publicBaseUrl": moved}})
	if r.Status != http.StatusOK {
		t.Fatalf("PUT /api/config: %d %s", r.Status, r.Raw)
	}
	got := getTask(e, user, v.ID)
	out := got.Result.Outputs["2"][0]
	want := moved + "/files/" + out.FileID + "/"
	if !strings.HasPrefix(out.URL, want) || len(got.Result.Files) != 1 || got.Result.Files[0] != out.URL {
		t.Fatalf("after the base moved: files %v, output URL %q; want both under %s", got.Result.Files, out.URL, want)
	}
	assertPNG(t, got.Result.Files[0])
}
