package app_test

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

// redisServer is a redis-server of the test's own on a spare port, with
// appendonly persistence in a temp dir, so the test can restart it.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	redistest.URL(t) // the house rule: skip on a laptop without Redis, fail in CI
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisServer{t: t, port: port, dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", r.dir,
		"--maxmemory-policy", "noeviction")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port)})
	defer rdb.Close()
	apptest.Eventually(r.t, 10*time.Second, "redis-server to answer", func() bool {
		return rdb.Ping(r.t.Context()).Err() == nil
	})
}

func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// TestRedisRestartLosesNothing restarts the gateway's Redis (appendonly)
// mid-run: while it is down health says disconnected with 503 and writes
// answer 503; afterwards every task completes, each ran once.
func TestRedisRestartLosesNothing(t *testing.T) {
	t.Parallel()
	const n = 60
	rs := startRedis(t)
	e := apptest.Start(t, apptest.Options{Instances: 4, Sim: comfysim.Options{StepDelay: 5 * time.Millisecond},
		Configure: func(c *config.Config) {
			c.Store.Driver, c.Store.URL, c.Store.Prefix = "redis", rs.url(), "restart:"
		}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = submit(e, admin, map[string]any{"workflow": t2i(20, fmt.Sprintf("redis/%d", i))}).ID
	}
	e.Eventually(30*time.Second, "some completions", func() bool {
		var o struct{ CompletedTasks int }
		e.Do("GET", "/api/monitor/overview", admin, nil).Into(t, &o)
		return o.CompletedTasks >= 5
	})

	rs.stop() // SIGKILL: only what appendfsync wrote survives
	r := e.Do("GET", "/api/health", "", nil)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Raw), `"redis":"disconnected"`) ||
		!strings.Contains(string(r.Raw), `"status":"degraded"`) {
		t.Errorf("health while Redis is down: %d %s", r.Status, r.Raw)
	}
	wantError(t, e.Do("POST", "/api/tasks", admin, map[string]any{"workflow": basic("down")}), http.StatusServiceUnavailable, "store_unavailable")
	rs.start()

	e.Eventually(60*time.Second, "every task completed after the restart", func() bool {
		var o struct{ CompletedTasks int }
		r := e.Do("GET", "/api/monitor/overview", admin, nil)
		if r.Status != http.StatusOK {
			return false // the store's connections may still be coming back
		}
		r.Into(t, &o)
		return o.CompletedTasks == n
	})
	for _, id := range ids {
		if c := e.SimLog.Count(id); c != 1 {
			t.Errorf("task %s ran %d times", id, c)
		}
	}
	if r := e.Do("GET", "/api/health", "", nil); r.Status != 200 || !strings.Contains(string(r.Raw), `"redis":"connected"`) {
		t.Errorf("health after the restart: %d %s", r.Status, r.Raw)
	}
}
