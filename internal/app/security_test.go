package app_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
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

// TestStaleRuntimeConfigIsSkipped: a saved runtime config that no longer
// validates (here, the 1-byte body limit an older version accepted) does not
// stop the gateway nor apply: it is skipped with a warning in the log and in
// GET /api/config, and the next PUT replaces it.
func TestStaleRuntimeConfigIsSkipped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	saveRuntimeConfig(t, dir, `{"server":{"maxBodyBytes":1},"healthCheck":{"interval":200}}`)
	var logs syncBuffer
	e := apptest.Start(t, apptest.Options{Instances: 1, DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	var got struct {
		Server struct {
			MaxBodyBytes int64 `json:"maxBodyBytes"`
		} `json:"server"`
		RuntimeOverrides []string `json:"runtimeOverrides"`
		Ignored          string   `json:"runtimeOverridesIgnored"`
	}
	e.Do("GET", "/api/config", admin, nil).Into(t, &got)
	if got.Server.MaxBodyBytes != 10<<20 || len(got.RuntimeOverrides) != 0 {
		t.Errorf("the stale document applied: maxBodyBytes %d, overrides %v", got.Server.MaxBodyBytes, got.RuntimeOverrides)
	}
	if !strings.Contains(got.Ignored, "server.maxBodyBytes") {
		t.Errorf("runtimeOverridesIgnored = %q, want it to name server.maxBodyBytes", got.Ignored)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "runtime config ignored") {
		t.Errorf("no warning in the log:\n%s", logs.String())
	}

	if r := e.Do("PUT", "/api/config", admin, map[string]any{"healthCheck": map[string]any{"interval": 300}}); r.Status != http.StatusOK {
		t.Fatalf("PUT /api/config: %d %s", r.Status, r.Raw)
	}
	got.Ignored = ""
	e.Do("GET", "/api/config", admin, nil).Into(t, &got)
	if got.Ignored != "" {
		t.Errorf("after a PUT, runtimeOverridesIgnored = %q, want none", got.Ignored)
	}
	e.Restart()
	e.Login(apptest.AdminUser, apptest.AdminPass)
	if !strings.Contains(logs.String(), "runtime config ignored") || strings.Count(logs.String(), "runtime config ignored") != 1 {
		t.Errorf("the replaced document was ignored again after a restart:\n%s", logs.String())
	}
}

// saveRuntimeConfig stores doc as the runtime config of the SQLite store in
// dataDir, as PUT /api/config would have.
func saveRuntimeConfig(t *testing.T, dataDir, doc string) {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), filepath.Join(dataDir, "comfyfleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.ConfigPut(context.Background(), []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	// mu guards b.
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
