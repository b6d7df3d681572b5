package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/dispatch"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TestSIGTERMDrainsOnSQLite: SIGTERM with tasks running on fast and slow
// instances and prompts prefetched behind them. The gateway exits within
// server.shutdownGrace, with status 0. At that moment the store and the
// instances agree on every task: a run that ended is completed, a run
// still going (longer than the grace) stays running for the next start to
// reattach, and a prompt that had not started was taken back out of its
// instance's queue and is pending again. The next start then completes
// every task, each run exactly once.
func TestSIGTERMDrainsOnSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const tasks, grace = 24, 4 * time.Second
	bin := buildBinary(t)
	log := comfysim.NewLog()
	fast := startTestSims(t, 2, comfysim.Options{Name: "fast", Log: log, StepDelay: 50 * time.Millisecond}) // 0.5 s a run
	slow := startTestSims(t, 2, comfysim.Options{Name: "slow", Log: log, StepDelay: time.Second})           // 10 s a run
	t.Setenv("COMFYFLEET_SERVER_SHUTDOWN_GRACE", grace.String())
	dir := t.TempDir()
	addr := freeAddr(t)
	g := &gateway{t: t, bin: bin, dir: dir, url: "http://" + addr, cfg: writeConfig(t, dir, addr, append(fast, slow...), "")}
	g.start()
	token := g.login()
	ids := g.submitAll(token, tasks)
	// Both slow instances run one task and hold another in their queue;
	// the fast ones have finished a few.
	apptest.Eventually(t, 60*time.Second, "runs on every instance", func() bool {
		return queued(t, slow[0]) == 2 && queued(t, slow[1]) == 2 && g.completed(token) >= 4
	})

	exited := g.termAsync()
	// Readiness fails first, while the API still answers.
	apptest.Eventually(t, grace, "/readyz to answer 503", func() bool {
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz while draining: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	took, err := exited(grace + 10*time.Second)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("gateway-%d.log", g.runs)))
		t.Fatalf("the gateway exited with %v after SIGTERM; its log:\n%s", err, log)
	}
	t.Logf("exited %v after SIGTERM", took)
	if took > grace {
		t.Errorf("the gateway took %v to exit, more than its grace of %v", took, grace)
	}
	for _, s := range append(fast, slow...) {
		if n := pendingIn(t, s); n != 0 {
			t.Errorf("%s still holds %d prompts that had not started; they should be back in the gateway's queue", s.Name(), n)
		}
	}
	st, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "data", "comfyfleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	var completed, handedBack, pending int
	for _, id := range ids {
		tk, err := st.TaskGet(context.Background(), id)
		if err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
		runs := log.Runs(id)
		switch {
		case len(runs) == 0:
			pending++
			if tk.Status != task.StatusPending {
				t.Errorf("task %s never started and is %s, want pending", id, tk.Status)
			}
		case len(runs) == 1 && runs[0].Outcome == comfysim.OutcomeSuccess:
			completed++
			if tk.Status != task.StatusCompleted {
				t.Errorf("task %s ran to its end on %s before the exit and is %s, want completed", id, runs[0].Instance, tk.Status)
			}
		case len(runs) == 1 && runs[0].Outcome == comfysim.OutcomeRunning:
			handedBack++
			if tk.Status != task.StatusRunning || !strings.HasPrefix(runs[0].Instance, "slow") {
				t.Errorf("task %s still runs on %s and is %s, want running on a slow instance", id, runs[0].Instance, tk.Status)
			}
		default:
			t.Errorf("task %s: runs %+v", id, runs)
		}
	}
	st.Close()
	t.Logf("at the exit: %d completed, %d left running past the grace, %d pending", completed, handedBack, pending)
	if handedBack != len(slow) || pending == 0 {
		t.Errorf("want the %d slow runs left running and some pending tasks; the test proves little otherwise", len(slow))
	}

	g.start()
	token = g.login()
	apptest.Eventually(t, 120*time.Second, "all tasks completed after the restart", func() bool { return g.completed(token) == tasks })
	for _, id := range ids {
		if n := log.Count(id); n != 1 {
			t.Errorf("task %s ran %d times: %+v", id, n, log.Runs(id))
		}
	}
	if o := log.Overlaps(); len(o) != 0 {
		t.Errorf("runs overlapped: %v", o)
	}
	g.stop()
}

// TestSIGTERMDrainsOnRedis: two replicas share one Redis; one gets SIGTERM
// mid-run. It exits within its grace with status 0, leaving none of its
// prompts in the instances' queues; the other replica adopts its
// instances and takes the tasks it handed back: every task completes,
// each ran exactly once, never on two instances at a time.
func TestSIGTERMDrainsOnRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const tasks, instances, grace = 200, 4, 10 * time.Second
	t.Setenv("COMFYFLEET_SERVER_SHUTDOWN_GRACE", grace.String())
	log, gws, tokens := startReplicas(t, instances, 2, 5*time.Millisecond, "")
	sims := gws[0].sims
	ids, _ := submitRoundRobin(t, gws, tokens, tasks)
	apptest.Eventually(t, 120*time.Second, "20 completions", func() bool { return gws[1].completed(tokens[1]) >= 20 })
	replica, err := os.ReadFile(filepath.Join(gws[0].dir, "data", "replica-id"))
	if err != nil {
		t.Fatal(err)
	}
	client := dispatch.ClientIDPrefix + strings.TrimSpace(string(replica))

	took, err := gws[0].term(grace + 10*time.Second)
	if err != nil {
		t.Fatalf("replica 0 exited with %v after SIGTERM", err)
	}
	t.Logf("replica 0 exited %v after SIGTERM, with %d of %d tasks completed", took, gws[1].completed(tokens[1]), tasks)
	if took > grace {
		t.Errorf("replica 0 took %v to exit, more than its grace of %v", took, grace)
	}
	for _, s := range sims {
		for _, it := range queue(t, s).Pending {
			if it.client == client {
				t.Errorf("%s still holds prompt %s of the stopped replica", s.Name(), it.id)
			}
		}
	}
	apptest.Eventually(t, 180*time.Second, "all tasks completed", func() bool { return gws[1].completed(tokens[1]) == tasks })
	for _, id := range ids {
		if n := log.Count(id); n != 1 {
			t.Errorf("task %s ran %d times: %+v", id, n, log.Runs(id))
			logLines(t, gws, id)
		}
	}
	if o := log.Overlaps(); len(o) != 0 {
		t.Errorf("runs overlapped: %v", o)
	}
	gws[1].stop()
}

// term sends SIGTERM and waits for the process to exit, at most limit; it
// returns how long the exit took and the process's error (nil: status 0).
func (g *gateway) term(limit time.Duration) (time.Duration, error) {
	g.t.Helper()
	return g.termAsync()(limit)
}

// termAsync sends SIGTERM; the function it returns waits for the exit as
// term does.
func (g *gateway) termAsync() func(limit time.Duration) (time.Duration, error) {
	g.t.Helper()
	start := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		g.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	return func(limit time.Duration) (time.Duration, error) {
		g.t.Helper()
		select {
		case err := <-done:
			return time.Since(start), err
		case <-time.After(limit):
			g.t.Fatalf("the gateway did not exit within %v of SIGTERM", limit)
			return 0, nil
		}
	}
}

// startTestSims starts n simulated instances that stop at the end of the test.
func startTestSims(t *testing.T, n int, opts comfysim.Options) []*comfysim.Sim {
	t.Helper()
	sims, err := comfysim.StartFleet(n, "127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range sims {
			s.Close()
		}
	})
	return sims
}

// queueItem is one prompt of an instance's queue.
type queueItem struct{ id, client string }

// comfyQueue is an instance's GET /queue.
type comfyQueue struct{ Running, Pending []queueItem }

// queue reads an instance's queue: ComfyUI lists each prompt as
// [number, prompt_id, prompt, extra_data, outputs].
func queue(t *testing.T, s *comfysim.Sim) comfyQueue {
	t.Helper()
	resp, err := http.Get(s.URL() + "/queue")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw struct {
		Running [][]json.RawMessage `json:"queue_running"`
		Pending [][]json.RawMessage `json:"queue_pending"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	items := func(list [][]json.RawMessage) []queueItem {
		var out []queueItem
		for _, it := range list {
			var q queueItem
			if len(it) > 3 {
				_ = json.Unmarshal(it[1], &q.id)
				var extra struct {
					ClientID string `json:"client_id"`
				}
				_ = json.Unmarshal(it[3], &extra)
				q.client = extra.ClientID
			}
			out = append(out, q)
		}
		return out
	}
	return comfyQueue{Running: items(raw.Running), Pending: items(raw.Pending)}
}

// queued counts the prompts an instance runs or holds in its queue.
func queued(t *testing.T, s *comfysim.Sim) int {
	q := queue(t, s)
	return len(q.Running) + len(q.Pending)
}

// pendingIn counts the prompts waiting in an instance's queue.
func pendingIn(t *testing.T, s *comfysim.Sim) int { return len(queue(t, s).Pending) }
