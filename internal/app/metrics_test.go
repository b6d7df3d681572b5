package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/metrics/metricstest"
)

// TestMetrics runs tasks through the simulated fleet (completed, failed on a
// node, requeued after a lost instance, running, pending) and reads every
// kind of metric back from GET /metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	// Without prefetch, so that a task behind a busy instance stays pending.
	e := apptest.Start(t, apptest.Options{Instances: 2, Sim: comfysim.Options{StepDelay: 20 * time.Millisecond},
		Configure: noPrefetch})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	e.DialWS(admin)

	for _, prefix := range []string{"metrics/a", "metrics/b"} {
		waitStatus(e, admin, submit(e, admin, map[string]any{"workflow": basic(prefix)}).ID, "completed", 10*time.Second)
	}

	for _, s := range e.Sims {
		s.FailNode("ImageInvert", "boom from the metrics test")
	}
	wf := basic("metrics/fail")
	wf["3"] = node("ImageInvert", map[string]any{"image": link("1", 0)})
	wf["2"] = node("SaveImage", map[string]any{"images": link("3", 0), "filename_prefix": "metrics/fail"})
	waitStatus(e, admin, submit(e, admin, map[string]any{"workflow": wf}).ID, "failed", 10*time.Second)
	for _, s := range e.Sims {
		s.ClearFaults()
	}

	// Lose the instance of a run: it is requeued and completes on the other.
	v := submit(e, admin, map[string]any{"workflow": t2i(100, "metrics/killed")})
	running := waitStatus(e, admin, v.ID, "running", 10*time.Second)
	e.Eventually(5*time.Second, "the run to start on the simulator", func() bool { return e.SimLog.Count(v.ID) == 1 })
	var victim, survivor string
	for _, s := range e.Sims {
		if s.Addr() == running.InstanceID {
			victim = s.Addr()
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
		} else {
			survivor = s.Addr()
		}
	}
	if victim == "" {
		t.Fatalf("task runs on %q, not a simulator", running.InstanceID)
	}
	waitStatus(e, admin, v.ID, "completed", 20*time.Second)

	// Disable the dead one; keep the survivor busy with a long run, so the
	// next task stays pending.
	if r := e.Do("PUT", "/api/instances/"+victim, admin, map[string]any{"enabled": false}); r.Status != http.StatusOK {
		t.Fatalf("disable %s: %d %s", victim, r.Status, r.Raw)
	}
	long := submit(e, admin, map[string]any{"workflow": t2i(1000, "metrics/long")})
	submit(e, admin, map[string]any{"workflow": basic("metrics/pending")})
	waitStatus(e, admin, long.ID, "running", 10*time.Second)

	// The last run's end is counted just after its store write: wait for it.
	var f metricstest.Families
	e.Eventually(5*time.Second, "3 completed runs in /metrics", func() bool {
		f = metricstest.Scrape(t, e.URL()+"/metrics", admin)
		h := f.Find("comfyfleet_task_run_duration_seconds", "status", "completed")
		return h != nil && h.GetHistogram().GetSampleCount() == 3
	})

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"comfyfleet_tasks", []string{"status", "pending"}, 1},
		{"comfyfleet_tasks", []string{"status", "running"}, 1},
		{"comfyfleet_tasks", []string{"status", "completed"}, 3},
		{"comfyfleet_tasks", []string{"status", "failed"}, 1},
		{"comfyfleet_task_failures_total", []string{"type", "execution_error"}, 1},
		{"comfyfleet_task_failures_total", []string{"type", "timeout"}, 0},
		{"comfyfleet_task_requeues_total", []string{"reason", "instance_lost"}, 1},
		{"comfyfleet_instance_alive", []string{"instance_id", victim}, 0},
		{"comfyfleet_instance_alive", []string{"instance_id", survivor}, 1},
		{"comfyfleet_instance_enabled", []string{"instance_id", victim}, 0},
		{"comfyfleet_instance_enabled", []string{"instance_id", survivor}, 1},
		{"comfyfleet_instance_busy", []string{"instance_id", survivor}, 1},
		{"comfyfleet_ws_clients", nil, 1},
		{"comfyfleet_ws_drops_total", []string{"reason", "send_buffer_overflow"}, 0},
		{"comfyfleet_http_requests_total", []string{"method", "POST", "route", "/api/tasks", "code", "200"}, 6},
		{"comfyfleet_http_requests_total", []string{"method", "PUT", "route", "/api/instances/{id}", "code", "200"}, 1},
	} {
		if got := f.Value(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Claims: 2 completed, 1 failed, the lost run twice and the long one.
	if got := f.Histogram(t, "comfyfleet_task_dispatch_latency_seconds").GetSampleCount(); got != 6 {
		t.Errorf("dispatch latency count = %d, want 6", got)
	}
	if got := f.Histogram(t, "comfyfleet_task_run_duration_seconds", "status", "failed").GetSampleCount(); got != 1 {
		t.Errorf("failed run duration count = %d, want 1", got)
	}
	if got := f.Histogram(t, "comfyfleet_http_request_duration_seconds",
		"method", "GET", "route", "/api/tasks/{id}", "code", "200").GetSampleCount(); got == 0 {
		t.Error("GET /api/tasks/{id} was not timed")
	}
	if f["go_goroutines"] == nil || f["process_cpu_seconds_total"] == nil {
		t.Error("the Go runtime and process metrics are missing")
	}
}

// TestMetricsNeedAdmin: without metrics.listen, /metrics is on the API's
// listener for admins only, and the profiler is not served at all.
func TestMetricsNeedAdmin(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	user := e.Login(apptest.User, apptest.UserPass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)

	wantError(t, e.Do("GET", "/metrics", "", nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.Do("GET", "/metrics", "not-a-jwt", nil), http.StatusUnauthorized, "invalid_token")
	wantError(t, e.Do("GET", "/metrics", user, nil), http.StatusForbidden, "forbidden")
	f := metricstest.Scrape(t, e.URL()+"/metrics", admin)
	if got := f.Value(t, "comfyfleet_tasks", "status", "pending"); got != 0 {
		t.Errorf("pending = %v, want 0", got)
	}
	wantError(t, e.Do("GET", "/debug/pprof/", admin, nil), http.StatusNotFound, "route_not_found")
	if e.App().MetricsAddr() != "" {
		t.Errorf("MetricsAddr() = %q without metrics.listen", e.App().MetricsAddr())
	}
}

// TestMetricsListen: with metrics.listen (and metrics.pprof), /metrics and
// the profiler are served there without a token, and no longer on the
// API's listener.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Metrics.Listen = "127.0.0.1:0"
		c.Metrics.Pprof = true
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	addr := e.App().MetricsAddr()
	if addr == "" || addr == e.App().Addr() {
		t.Fatalf("MetricsAddr() = %q, API on %s: want a listener of its own", addr, e.App().Addr())
	}
	f := metricstest.Scrape(t, "http://"+addr+"/metrics", "")
	if got := f.Value(t, "comfyfleet_ws_clients"); got != 0 {
		t.Errorf("ws clients = %v, want 0", got)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pprof on the metrics listener: %d, want 200", resp.StatusCode)
	}
	wantError(t, e.Do("GET", "/metrics", admin, nil), http.StatusNotFound, "route_not_found")
	for _, rt := range e.App().Routes() {
		if rt.Pattern == "/metrics" {
			t.Error("the API's route table has /metrics while metrics.listen is set")
		}
	}
	// The API's requests are still counted, on the metrics listener.
	f = metricstest.Scrape(t, "http://"+addr+"/metrics", "")
	if got := f.Value(t, "comfyfleet_http_requests_total", "method", "POST", "route", "/api/auth/login", "code", "200"); got != 1 {
		t.Errorf("logins counted = %v, want 1", got)
	}
}
