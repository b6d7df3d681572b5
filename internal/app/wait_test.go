package app_test

import (
	"net/http"
	"strings"
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
		configure := func(c *config.Config) { c.Webhooks.AllowPrivate = true }
		if driver == "redis" {
			url := redistest.URL(t)
			onRedis := redisConfig(url, redistest.Prefix(t, url))
			configure = func(c *config.Config) { onRedis(c); c.Webhooks.AllowPrivate = true }
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

		// A waiting submit with a webhook shows its secret, as any submit
		// does: it is shown nowhere else.
		r = e.Do("POST", "/api/tasks?wait=60s", alice, map[string]any{"workflow": basic("wait/hook"),
			"webhook": map[string]any{"url": "http://127.0.0.1:9/hook"}})
		if r.Status != http.StatusOK || !strings.Contains(string(r.Raw), `"secret":"whsec_`) {
			t.Errorf("wait=60s with a webhook: %d %s; want 200 with the webhook's secret", r.Status, r.Raw)
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
