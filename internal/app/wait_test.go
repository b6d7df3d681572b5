package app_test

import (
	"net/http"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

// TestSubmitWait: POST /api/tasks?wait= answers with the finished task
// when it ends within the wait, and with the pending task and 202 when it
// does not; the wait is bounded. Both stores (their events differ).
func TestSubmitWait(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		configure := func(*config.Config) {}
		if driver == "redis" {
			url := redistest.URL(t)
			configure = redisConfig(url, redistest.Prefix(t, url))
		}
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: configure})
		admin := e.Login(apptest.AdminUser, apptest.AdminPass)
		alice := e.Login(apptest.User, apptest.UserPass)
		waitAlive(e, admin)

		r := e.Do("POST", "/api/tasks?wait=60s", alice, map[string]any{"workflow": basic("wait/done")})
		var v taskView
		r.Into(t, &v)
		if r.Status != http.StatusOK || r.Body.Code != http.StatusOK || v.Status != "completed" || v.Result == nil || len(v.Result.Files) == 0 {
			t.Errorf("wait=60s: %d, task %s with result %+v; want 200 and the completed task", r.Status, v.Status, v.Result)
		}

		setEnabled(e, admin, false) // nothing runs: the wait runs out
		r = e.Do("POST", "/api/tasks?wait=300ms", alice, map[string]any{"workflow": basic("wait/pending")})
		r.Into(t, &v)
		if r.Status != http.StatusAccepted || r.Body.Code != http.StatusAccepted || v.Status != "pending" || v.ID == "" {
			t.Errorf("wait=300ms on a disabled fleet: %d (code %d), task %s; want 202 and the pending task", r.Status, r.Body.Code, v.Status)
		}

		for _, bad := range []string{"6m", "-1s", "soon"} {
			wantStatus(t, "wait="+bad, e.Do("POST", "/api/tasks?wait="+bad, alice, map[string]any{"workflow": basic("wait/bad")}),
				http.StatusBadRequest, "invalid_field")
		}
	})
}
