package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/metrics"
	"github.com/comfyfleet/comfyfleet/internal/metrics/metricstest"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scrape serves h and parses its answer.
func scrape(t *testing.T, h http.Handler) metricstest.Families {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	return metricstest.Scrape(t, srv.URL+"/metrics", "")
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestDispatchLatency(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	// A first claim counts from creation.
	m.TaskClaimed(&task.Task{ID: "a", Attempts: 1, CreatedAt: t0, StartedAt: t0.Add(2 * time.Second)})
	// A requeued one from its requeue, as this replica recorded it.
	m.TaskRequeued(&task.Task{ID: "b", Attempts: 1, CreatedAt: t0, UpdatedAt: t0.Add(time.Minute)}, "instance_lost")
	m.TaskClaimed(&task.Task{ID: "b", Attempts: 2, CreatedAt: t0, StartedAt: t0.Add(time.Minute + 500*time.Millisecond)})
	// One requeued by another replica is left out.
	m.TaskClaimed(&task.Task{ID: "c", Attempts: 2, CreatedAt: t0, StartedAt: t0.Add(time.Hour)})

	f := scrape(t, m.Handler())
	h := f.Histogram(t, "comfyfleet_task_dispatch_latency_seconds")
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 2.5 {
		t.Errorf("dispatch latency count=%d sum=%v, want 2 and 2.5", h.GetSampleCount(), h.GetSampleSum())
	}
	if got := f.Value(t, "comfyfleet_task_requeues_total", "reason", "instance_lost"); got != 1 {
		t.Errorf("requeues instance_lost = %v, want 1", got)
	}
	// Known reasons exist from the start.
	if got := f.Value(t, "comfyfleet_task_requeues_total", "reason", "prompt_gone"); got != 0 {
		t.Errorf("requeues prompt_gone = %v, want 0", got)
	}
}

func TestRunDurationAndFailures(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	finish := func(st task.Status, d time.Duration, errType string) {
		tk := &task.Task{Status: st, StartedAt: t0, FinishedAt: t0.Add(d)}
		if errType != "" {
			tk.Error = &task.Error{Type: errType}
		}
		m.TaskFinished(tk)
	}
	finish(task.StatusCompleted, 3*time.Second, "")
	finish(task.StatusCompleted, time.Second, "")
	finish(task.StatusFailed, 2*time.Second, task.ErrorTypeTimeout)
	finish(task.StatusFailed, time.Second, "prompt_outputs_failed_validation")
	finish(task.StatusFailed, time.Second, "Not A Label!")
	finish(task.StatusCancelled, time.Second, "")

	f := scrape(t, m.Handler())
	for _, c := range []struct {
		status string
		count  uint64
		sum    float64
	}{{"completed", 2, 4}, {"failed", 3, 4}, {"cancelled", 1, 1}} {
		h := f.Histogram(t, "comfyfleet_task_run_duration_seconds", "status", c.status)
		if h.GetSampleCount() != c.count || h.GetSampleSum() != c.sum {
			t.Errorf("run duration %s: count=%d sum=%v, want %d and %v", c.status, h.GetSampleCount(), h.GetSampleSum(), c.count, c.sum)
		}
	}
	for typ, want := range map[string]float64{
		"timeout": 1, "prompt_outputs_failed_validation": 1, "other": 1, "execution_error": 0,
	} {
		if got := f.Value(t, "comfyfleet_task_failures_total", "type", typ); got != want {
			t.Errorf("failures %s = %v, want %v", typ, got, want)
		}
	}
}

func TestCheckpointSwitches(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	if got := scrape(t, m.Handler()).Value(t, "comfyfleet_checkpoint_switches_total"); got != 0 {
		t.Errorf("switches before any run = %v, want 0", got)
	}
	m.CheckpointSwitched()
	m.CheckpointSwitched()
	if got := scrape(t, m.Handler()).Value(t, "comfyfleet_checkpoint_switches_total"); got != 2 {
		t.Errorf("switches = %v, want 2", got)
	}
}

// TestRunStages: each stage of a completed run lands in its own series,
// every series exists before the first run, and an unknown stage is
// dropped rather than growing the label set.
func TestRunStages(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	if h := scrape(t, m.Handler()).Histogram(t, "comfyfleet_task_stage_duration_seconds", "stage", "finish"); h.GetSampleCount() != 0 {
		t.Errorf("finish before any run: count %d, want 0", h.GetSampleCount())
	}
	m.RunStage("submit", 2*time.Millisecond)
	m.RunStage("submit", 500*time.Microsecond)
	m.RunStage("execution", 3*time.Second)
	m.RunStage("Not A Stage", time.Second)
	f := scrape(t, m.Handler())
	for _, c := range []struct {
		stage string
		count uint64
		sum   float64
	}{{"submit", 2, 0.0025}, {"queued", 0, 0}, {"execution", 1, 3}, {"collect", 0, 0}, {"finish", 0, 0}} {
		h := f.Histogram(t, "comfyfleet_task_stage_duration_seconds", "stage", c.stage)
		if h.GetSampleCount() != c.count || h.GetSampleSum() != c.sum {
			t.Errorf("stage %s: count=%d sum=%v, want %d and %v", c.stage, h.GetSampleCount(), h.GetSampleSum(), c.count, c.sum)
		}
	}
	if n := len(f["comfyfleet_task_stage_duration_seconds"].GetMetric()); n != 5 {
		t.Errorf("%d stage series, want 5", n)
	}
}

// TestFailureTypesBounded: however many types ComfyUI invents, the label
// set stays bounded.
func TestFailureTypesBounded(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	for i := range 500 {
		m.TaskFinished(&task.Task{Status: task.StatusFailed, Error: &task.Error{Type: fmt.Sprintf("type_%d", i)}})
	}
	f := scrape(t, m.Handler())
	series := len(f["comfyfleet_task_failures_total"].GetMetric())
	if series > 65 {
		t.Errorf("%d failure type series, want at most 65", series)
	}
	var total float64
	for _, s := range f["comfyfleet_task_failures_total"].GetMetric() {
		total += s.GetCounter().GetValue()
	}
	if total != 500 || f.Value(t, "comfyfleet_task_failures_total", "type", "other") == 0 {
		t.Errorf("failures total %v (want 500), other %v (want > 0)", total, f.Value(t, "comfyfleet_task_failures_total", "type", "other"))
	}
}

func TestSourcesAtScrapeTime(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	m := metrics.New(slog.New(slog.NewTextHandler(&logs, nil)))
	counts := map[task.Status]int{task.StatusPending: 7, task.StatusRunning: 2}
	var storeErr error
	clients := 3
	m.Watch(metrics.Sources{
		Tasks: func(context.Context) (map[task.Status]int, error) { return counts, storeErr },
		Instances: func(context.Context) ([]fleet.View, error) {
			return []fleet.View{{ID: "10.0.0.1:8001", Alive: true, Enabled: true}, {ID: "10.0.0.1:8002", Busy: true}}, nil
		},
		WSClients: func() int { return clients },
	})
	m.WSDropped("send_buffer_overflow")
	m.WSDropped("something new")

	f := scrape(t, m.Handler())
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"comfyfleet_tasks", []string{"status", "pending"}, 7},
		{"comfyfleet_tasks", []string{"status", "running"}, 2},
		{"comfyfleet_tasks", []string{"status", "failed"}, 0},
		{"comfyfleet_instance_alive", []string{"instance_id", "10.0.0.1:8001"}, 1},
		{"comfyfleet_instance_enabled", []string{"instance_id", "10.0.0.1:8001"}, 1},
		{"comfyfleet_instance_busy", []string{"instance_id", "10.0.0.1:8001"}, 0},
		{"comfyfleet_instance_alive", []string{"instance_id", "10.0.0.1:8002"}, 0},
		{"comfyfleet_instance_busy", []string{"instance_id", "10.0.0.1:8002"}, 1},
		{"comfyfleet_ws_clients", nil, 3},
		{"comfyfleet_ws_drops_total", []string{"reason", "send_buffer_overflow"}, 1},
		{"comfyfleet_ws_drops_total", []string{"reason", "write_timeout"}, 0},
		{"comfyfleet_ws_drops_total", []string{"reason", "other"}, 1},
	} {
		if got := f.Value(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if f["go_goroutines"] == nil || f["process_start_time_seconds"] == nil {
		t.Error("the Go runtime and process collectors are missing")
	}

	// The values are read at each scrape, not kept.
	counts = map[task.Status]int{task.StatusPending: 1}
	clients = 0
	f = scrape(t, m.Handler())
	if got := f.Value(t, "comfyfleet_tasks", "status", "pending"); got != 1 {
		t.Errorf("pending after change = %v, want 1", got)
	}
	if got := f.Value(t, "comfyfleet_ws_clients"); got != 0 {
		t.Errorf("ws clients after change = %v, want 0", got)
	}

	// A store that fails costs its own metrics only.
	storeErr = errors.New("store down")
	f = scrape(t, m.Handler())
	if f["comfyfleet_tasks"] != nil {
		t.Errorf("comfyfleet_tasks served while the store fails: %s", f.Names("comfyfleet_tasks"))
	}
	if got := f.Value(t, "comfyfleet_instance_alive", "instance_id", "10.0.0.1:8001"); got != 1 {
		t.Errorf("instance gauge with the store failing = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "store down") {
		t.Errorf("the failed scrape was not logged: %s", logs.String())
	}
}

func TestInstrumentHTTP(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("POST /api/tasks", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewServer(m.InstrumentHTTP(mux))
	defer srv.Close()

	send := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for i := range 3 {
		send("GET", fmt.Sprintf("/api/tasks/%d", i))
	}
	send("GET", "/api/tasks/missing")
	send("POST", "/api/tasks")
	send("GET", "/random/path/1")
	send("GET", "/random/path/2")
	send("BREW", "/coffee")

	f := scrape(t, m.Handler())
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"method", "GET", "route", "/api/tasks/{id}", "code", "200"}, 3},
		{[]string{"method", "GET", "route", "/api/tasks/{id}", "code", "404"}, 1},
		{[]string{"method", "POST", "route", "/api/tasks", "code", "200"}, 1},
		{[]string{"method", "GET", "route", "other", "code", "404"}, 2},
		{[]string{"method", "OTHER", "route", "other", "code", "404"}, 1},
	} {
		if got := f.Value(t, "comfyfleet_http_requests_total", c.labels...); got != c.want {
			t.Errorf("requests%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if n := len(f["comfyfleet_http_requests_total"].GetMetric()); n != 5 {
		t.Errorf("%d request series, want 5 (raw paths must not become labels): %s", n, f.Names("comfyfleet_http_requests_total"))
	}
	h := f.Histogram(t, "comfyfleet_http_request_duration_seconds", "route", "/api/tasks/{id}", "code", "200")
	if h.GetSampleCount() != 3 {
		t.Errorf("duration count = %d, want 3", h.GetSampleCount())
	}
}

// TestDebugHandler: /metrics always; the profiler only when asked for, and
// never its cmdline page, which shows the process's arguments.
func TestDebugHandler(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil)
	for _, profiler := range []bool{false, true} {
		srv := httptest.NewServer(m.DebugHandler(profiler))
		defer srv.Close()
		if f := metricstest.Scrape(t, srv.URL+"/metrics", ""); f["go_goroutines"] == nil {
			t.Error("/metrics has no go_goroutines")
		}
		want := map[string]int{"/debug/pprof/goroutine?debug=1": http.StatusNotFound, "/debug/pprof/cmdline": http.StatusNotFound}
		if profiler {
			want["/debug/pprof/goroutine?debug=1"] = http.StatusOK
		}
		for path, code := range want {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("profiler %v: %s: %d, want %d", profiler, path, resp.StatusCode, code)
			}
		}
	}
}
