package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
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
	var logs apptest.SyncBuffer
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

// TestConnectionsAreBounded: idle keep-alive connections, slow headers and
// slow bodies are closed within the configured times, while an upload may
// take longer than the read timeout and a /ws session outlives every one of
// them.
func TestConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Server.ReadHeaderTimeout = config.Duration(timeout)
		c.Server.ReadTimeout = config.Duration(timeout)
		c.Server.IdleTimeout = config.Duration(timeout)
		c.Server.WriteTimeout = config.Duration(timeout)
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	// limit is far above the timeouts: a connection still open then is held for good.
	const limit = 10 * time.Second

	t.Run("idle keep-alive", func(t *testing.T) {
		t.Parallel()
		c, br := dialRaw(t, e)
		fmt.Fprintf(c, "GET /api/health HTTP/1.1\r\nHost: gateway\r\n\r\n")
		if resp := readResponse(t, br); resp.StatusCode != http.StatusOK {
			t.Fatalf("health: %d", resp.StatusCode)
		}
		if took := waitClosed(t, c, br, limit); took < timeout/2 {
			t.Errorf("closed after %v, before the idle timeout of %v", took, timeout)
		}
	})
	t.Run("slow headers", func(t *testing.T) {
		t.Parallel()
		c, br := dialRaw(t, e)
		fmt.Fprintf(c, "GET /api/health HTTP/1.1\r\nHost: gateway\r\n")
		waitClosed(t, c, br, limit)
	})
	t.Run("slow body", func(t *testing.T) {
		t.Parallel()
		c, br := dialRaw(t, e)
		fmt.Fprintf(c, "POST /api/auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"+
			"Content-Length: 100\r\n\r\n{\"username\"")
		c.SetReadDeadline(time.Now().Add(limit))
		resp := readResponse(t, br)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("slow body: %d, want 408", resp.StatusCode)
		}
		waitClosed(t, c, br, limit)
	})
	t.Run("upload longer than the read timeout", func(t *testing.T) {
		t.Parallel()
		c, br := dialRaw(t, e)
		head, tail := multipartBody("slow.txt", "slow upload body")
		fmt.Fprintf(c, "POST /api/files/upload HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
			admin, testBoundary, len(head)+len(tail))
		c.SetReadDeadline(time.Now().Add(limit))
		if resp := readResponse(t, br); resp.StatusCode != http.StatusContinue {
			t.Fatalf("upload: %d, want 100 Continue once the handler reads the body", resp.StatusCode)
		}
		io.WriteString(c, head)
		outlastReadTimeout(t, e, limit)
		io.WriteString(c, tail)
		resp := readResponse(t, br)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("upload that outlasted the read timeout: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("ws session", func(t *testing.T) {
		t.Parallel()
		ws := e.DialWS(admin)
		ws.WaitFor(limit, "global_status", func(m apptest.Message) bool { return m.Type == "global_status" })
		outlastReadTimeout(t, e, limit)
		ws.Send(map[string]any{"type": "ping", "requestId": "late"})
		ws.WaitFor(limit, "the pong", func(m apptest.Message) bool { return m.Type == "pong" && m.RequestID == "late" })
	})
}

// outlastReadTimeout returns once the read timeout has passed for every
// connection opened before the call: a connection that sends a part of its
// headers, opened now, has been closed by the gateway.
func outlastReadTimeout(t *testing.T, e *apptest.Env, limit time.Duration) {
	t.Helper()
	c, br := dialRaw(t, e)
	fmt.Fprintf(c, "GET /api/health HTTP/1.1\r\n")
	waitClosed(t, c, br, limit)
}

const testBoundary = "comfyfleet-test-boundary"

// multipartBody is a multipart/form-data body with one "file" part, split
// in the middle of the file's bytes.
func multipartBody(name, content string) (head, tail string) {
	head = "--" + testBoundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name + "\"\r\n" +
		"Content-Type: text/plain\r\n\r\n" + content[:len(content)/2]
	tail = content[len(content)/2:] + "\r\n--" + testBoundary + "--\r\n"
	return head, tail
}

// dialRaw opens a TCP connection to the gateway for hand-written HTTP.
func dialRaw(t *testing.T, e *apptest.Env) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", e.App().Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, br *bufio.Reader) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp
}

// waitClosed reads until the gateway closes c and returns how long that
// took; it fails when c is still open after limit.
func waitClosed(t *testing.T, c net.Conn, br *bufio.Reader, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, br)
	took := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection is still open after %v", limit)
	}
	return took
}

// TestWSConnectionsCapped: the per-user cap of /ws connections is the
// setting's, and a refusal is a 429 before the upgrade.
func TestWSConnectionsCapped(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Server.WSMaxConnsPerUser = 1
	}})
	alice := e.Login(apptest.User, apptest.UserPass)
	e.DialWS(alice)
	if got := e.DialWSStatus(alice); got != http.StatusTooManyRequests {
		t.Errorf("second /ws of a user with wsMaxConnsPerUser 1: status %d, want 429", got)
	}
	if got := e.DialWSStatus(e.Login(apptest.User2, apptest.User2Pass)); got != http.StatusSwitchingProtocols {
		t.Errorf("another user's /ws: status %d, want 101", got)
	}
}

// TestProfilerOnlyWhenAsked: with metrics.listen alone, the unauthenticated
// listener serves /metrics but no profiler, and the profiler's cmdline page
// (which showed --set auth.secret=...) is never served.
func TestProfilerOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, pprof := range []bool{false, true} {
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
			c.Metrics.Listen = "127.0.0.1:0"
			c.Metrics.Pprof = pprof
		}})
		want := map[string]int{"/metrics": 200, "/debug/pprof/cmdline": 404, "/debug/pprof/goroutine?debug=1": 404}
		if pprof {
			want["/debug/pprof/goroutine?debug=1"] = 200
		}
		for path, code := range want {
			resp, err := http.Get("http://" + e.App().MetricsAddr() + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("metrics.pprof %v: GET %s: %d, want %d", pprof, path, resp.StatusCode, code)
			}
			if path == "/debug/pprof/cmdline" && bytes.Contains(body, []byte(os.Args[0])) {
				t.Errorf("metrics.pprof %v: /debug/pprof/cmdline shows the command line: %s", pprof, body)
			}
		}
	}
}

// TestDataDirIsPrivate: a new data dir is the gateway user's only, and so
// are the database and the secrets in it.
func TestDataDirIsPrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	e := apptest.Start(t, apptest.Options{Instances: 1, DataDir: dir, Configure: func(c *config.Config) {
		c.Auth.Users = nil // the generated admin password's hash goes to the data dir
	}})
	e.Stop()
	for name, want := range map[string]os.FileMode{".": 0o700, "comfyfleet.db": 0o600, "jwt.secret": 0o600, "admin.hash": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("stat %s: %v", name, err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", name, got, want)
		}
	}
}

// TestPasswordChangeRevokesTokens: after a user's passwordHash changes in
// the config and the gateway restarts, their old token is refused; other
// users' tokens still work.
func TestPasswordChangeRevokesTokens(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)

	h, err := bcrypt.GenerateFromPassword([]byte("alice-new-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range e.Config.Auth.Users {
		if u.Username == apptest.User {
			e.Config.Auth.Users[i].PasswordHash = string(h)
		}
	}
	e.Restart()
	wantError(t, e.Do("GET", "/api/tasks", alice, nil), http.StatusUnauthorized, "invalid_token")
	if got := e.DialWSStatus(alice); got != http.StatusUnauthorized {
		t.Errorf("/ws with the old token: %d, want 401", got)
	}
	if r := e.Do("GET", "/api/tasks", bob, nil); r.Status != http.StatusOK {
		t.Errorf("bob's token: %d %s", r.Status, r.Raw)
	}
	if r := e.Do("GET", "/api/tasks", e.Login(apptest.User, "alice-new-password"), nil); r.Status != http.StatusOK {
		t.Errorf("alice's new token: %d %s", r.Status, r.Raw)
	}
}

// TestQueryTokenOnlyOnWS: ?token= is accepted on /ws only; elsewhere a token
// must come in the Authorization header, even with an Upgrade header.
func TestQueryTokenOnlyOnWS(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	req, err := http.NewRequest("GET", e.URL()+"/api/tasks?token="+admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/tasks?token=...: %d, want 401", resp.StatusCode)
	}
	if got := e.DialWSStatus(admin); got != http.StatusSwitchingProtocols {
		t.Errorf("/ws?token=...: %d, want 101", got)
	}
}

// TestLoginLimitBehindProxy: behind a trusted proxy the login limit counts
// the client the proxy saw, so one client's failures do not lock the others
// out, and a client cannot dodge the limit by writing X-Forwarded-For
// itself. From an untrusted peer the header is ignored.
func TestLoginLimitBehindProxy(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Server.TrustedProxies = config.Prefixes{netip.MustParsePrefix("127.0.0.1/32")}
	}})
	for range 5 {
		loginVia(t, e, "203.0.113.5", apptest.User, "wrong")
	}
	if got := loginVia(t, e, "203.0.113.5", apptest.User, apptest.UserPass); got != http.StatusTooManyRequests {
		t.Errorf("the client with 5 failures: %d, want 429", got)
	}
	if got := loginVia(t, e, "6.6.6.6, 203.0.113.5", apptest.User, apptest.UserPass); got != http.StatusTooManyRequests {
		t.Errorf("the same client with an address of its own choosing in front: %d, want 429", got)
	}
	if got := loginVia(t, e, "203.0.113.6", apptest.User, apptest.UserPass); got != http.StatusOK {
		t.Errorf("another client behind the same proxy: %d, want 200", got)
	}

	direct := apptest.Start(t, apptest.Options{Instances: 1})
	for range 5 {
		loginVia(t, direct, "203.0.113.5", apptest.User, "wrong")
	}
	if got := loginVia(t, direct, "203.0.113.6", apptest.User, apptest.UserPass); got != http.StatusTooManyRequests {
		t.Errorf("without trusted proxies, X-Forwarded-For moved the limit: %d, want 429", got)
	}
}

// loginVia logs in as if through a proxy that sent X-Forwarded-For: xff,
// and returns the status.
func loginVia(t *testing.T, e *apptest.Env, xff, user, pass string) int {
	t.Helper()
	body := strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass))
	req, err := http.NewRequest("POST", e.URL()+"/api/auth/login", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", xff)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestUploadAbortedIs400: a client that goes away in the middle of an
// upload's bytes gets a 400 (its fault), not a 500.
func TestUploadAbortedIs400(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	c, br := dialRaw(t, e)
	head, tail := multipartBody("cut.txt", "these bytes never all arrive")
	fmt.Fprintf(c, "POST /api/files/upload HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n%s",
		admin, testBoundary, len(head)+len(tail), head)
	c.(*net.TCPConn).CloseWrite() // the body ends early
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp := readResponse(t, br)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte(`"error":"upload_aborted"`)) {
		t.Errorf("aborted upload: %d %s, want 400 upload_aborted in the envelope", resp.StatusCode, body)
	}
}

// TestRangeNotSatisfiableInEnvelope: a download range outside the file is
// a 416 in the error envelope, with the Content-Range the RFC asks for.
func TestRangeNotSatisfiableInEnvelope(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	id := upload(e, admin, "range.txt", []byte("0123456789"))
	req, _ := http.NewRequest("GET", e.URL()+"/files/"+id+"/range.txt", nil)
	req.Header.Set("Range", "bytes=100-200")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := &apptest.Response{Status: resp.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	wantError(t, r, http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable")
	if got := resp.Header.Get("Content-Range"); got != "bytes */10" {
		t.Errorf("Content-Range = %q, want bytes */10", got)
	}
	if got := resp.Header.Get("Cache-Control"); strings.Contains(got, "immutable") {
		t.Errorf("an error is cached for good: Cache-Control %q", got)
	}
}

// TestTaskTimeoutBounded: a task's own timeout is at most
// scheduler.maxTaskTimeout; a larger one, even one whose milliseconds would
// overflow a time.Duration, is a 400 naming the field.
func TestTaskTimeoutBounded(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	user := e.Login(apptest.User, apptest.UserPass)
	for _, timeout := range []int64{24*3600*1000 + 1, 1 << 53, math.MaxInt64, -1} {
		r := e.Do("POST", "/api/tasks", user, map[string]any{"workflow": t2i(1, "bound"), "timeout": timeout})
		wantError(t, r, http.StatusBadRequest, "invalid_field")
		var field struct {
			Field string `json:"field"`
		}
		r.Into(t, &field)
		if field.Field != "timeout" {
			t.Errorf("timeout %d: the refusal names %q, want timeout", timeout, field.Field)
		}
	}
	submit(e, user, map[string]any{"workflow": t2i(1, "bound"), "timeout": 24 * 3600 * 1000})
}
