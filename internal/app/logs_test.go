package app_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/logging"
)

// jsonLines parses a JSON log; every line must be one object.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestRequestLogsJSONWithoutSecrets: with log.format json every line is a
// JSON object; each request is logged with its route pattern, status,
// duration and task id; and no password, token or signing secret appears
// anywhere in the log, whatever the requests carried (a login, bearer
// tokens, a /ws token in the query, a failed login).
func TestRequestLogsJSONWithoutSecrets(t *testing.T) {
	t.Parallel()
	var buf apptest.SyncBuffer
	log, err := logging.New(&buf, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cret-signing-key-0123456789abcdef"
	e := apptest.Start(t, apptest.Options{Instances: 1, Logger: log, Configure: func(c *config.Config) {
		c.Auth.Secret = secret
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, admin)
	task := submit(e, user, map[string]any{"workflow": basic("logs/one")})
	waitStatus(e, user, task.ID, "completed", 30*time.Second)
	if r := e.Do("GET", "/api/tasks/"+task.ID, admin, nil); r.Status != http.StatusOK {
		t.Fatalf("get task: %d", r.Status)
	}
	e.Do("POST", "/api/auth/login", "", map[string]any{"username": apptest.User2, "password": "wrong-" + apptest.User2Pass})
	e.Do("GET", "/api/tasks", "not-a-jwt-but-secret-looking", nil)
	e.DialWS(user).Close()
	e.Do("GET", "/readyz", "", nil)
	e.Stop()

	lines := jsonLines(t, buf.String())
	find := func(route string, match func(map[string]any) bool) map[string]any {
		for _, l := range lines {
			if l["msg"] == "http request" && l["route"] == route && (match == nil || match(l)) {
				return l
			}
		}
		return nil
	}
	created := find("POST /api/tasks", nil)
	if created == nil || created["status"] != float64(200) || created["task_id"] != task.ID || created["user"] != apptest.User {
		t.Errorf("POST /api/tasks log line = %v, want status 200, task_id %s, user %s", created, task.ID, apptest.User)
	}
	if d, ok := created["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("POST /api/tasks log line has no duration_ms: %v", created)
	}
	if got := find("GET /api/tasks/{id}", nil); got == nil || got["task_id"] != task.ID || got["path"] != "/api/tasks/"+task.ID {
		t.Errorf("GET /api/tasks/{id} log line = %v", got)
	}
	if got := find("GET /api/tasks", func(l map[string]any) bool { return l["status"] == float64(401) }); got == nil {
		t.Error("no log line for the request with a bad token")
	}
	if got := find("GET /ws", nil); got == nil || got["path"] != "/ws" {
		t.Errorf("GET /ws log line = %v", got)
	}
	if got := find("GET /readyz", nil); got == nil || got["level"] != "DEBUG" {
		t.Errorf("GET /readyz log line = %v, want a debug line", got)
	}

	all := buf.String()
	for name, s := range map[string]string{
		"admin password": apptest.AdminPass, "user password": apptest.UserPass, "wrong password": "wrong-" + apptest.User2Pass,
		"admin token": admin, "user token": user, "bad token": "not-a-jwt-but-secret-looking", "signing secret": secret,
	} {
		if strings.Contains(all, s) {
			t.Errorf("the log contains the %s", name)
		}
	}
}
