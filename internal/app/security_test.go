package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
)

// TestNoSettingLocksTheOperatorOut: a body limit that would refuse every
// JSON request is a 400 naming the field, and login and PUT /api/config read
// their bodies with limits of their own, so they work whatever the setting.
func TestNoSettingLocksTheOperatorOut(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)

	r := e.Do("PUT", "/api/config", admin, map[string]any{"server": map[string]any{"maxBodyBytes": 1}})
	wantError(t, r, http.StatusBadRequest, "invalid_config")
	var field struct {
		Field string `json:"field"`
	}
	r.Into(t, &field)
	if field.Field != "server.maxBodyBytes" {
		t.Errorf("the refusal names %q, want server.maxBodyBytes", field.Field)
	}

	// At the floor, a config body larger than the limit still gets through,
	// and so do login and reset.
	if r := e.Do("PUT", "/api/config", admin, map[string]any{"server": map[string]any{"maxBodyBytes": 65536}}); r.Status != http.StatusOK {
		t.Fatalf("maxBodyBytes at the floor: %d %s", r.Status, r.Raw)
	}
	big := []byte(`{"healthCheck":{"interval":30000}` + strings.Repeat(" ", 100<<10) + `}`)
	if r := e.Do("PUT", "/api/config", admin, big); r.Status != http.StatusOK {
		t.Errorf("a 100 KiB PUT /api/config with maxBodyBytes 64 KiB: %d %s", r.Status, r.Raw)
	}
	if tok := e.Login(apptest.User, apptest.UserPass); tok == "" {
		t.Error("login failed")
	}
	if r := e.Do("PUT", "/api/config", admin, []byte(`{"reset":true}`)); r.Status != http.StatusOK {
		t.Errorf("reset: %d %s", r.Status, r.Raw)
	}
	// The login limit is fixed too: a huge login body is refused early.
	huge := []byte(`{"username":"admin","password":"` + strings.Repeat("x", 32<<10) + `"}`)
	wantError(t, e.Do("POST", "/api/auth/login", "", huge), http.StatusRequestEntityTooLarge, "body_too_large")
}
