package app_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// noPrefetch turns prefetch off: the gateway gives an instance one prompt
// at a time and the next task waits in the gateway's queue.
func noPrefetch(c *config.Config) {
	zero := 0
	c.Scheduler.Prefetch = &zero
}

// received reports whether sim got a POST /prompt for promptID.
func received(sim *comfysim.Sim, promptID string) bool {
	return slices.ContainsFunc(sim.Prompts(), func(p comfysim.ReceivedPrompt) bool {
		return p.PromptID == promptID && p.Status == http.StatusOK
	})
}

// prefetched starts a gateway in front of one simulated instance (or more,
// all but the first disabled), parks a first task in the first instance and
// waits until the gateway has placed a second one in that instance's queue
// behind it. The first prompt hangs until the sim releases it.
func prefetched(t *testing.T, opts apptest.Options, first, second map[string]any) (e *apptest.Env, admin, a, b string) {
	t.Helper()
	e = apptest.Start(t, opts)
	admin = e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	for _, s := range e.Sims[1:] {
		if r := e.Do("PUT", "/api/instances/"+s.Addr(), admin, map[string]bool{"enabled": false}); r.Status != 200 {
			t.Fatalf("disable %s: %d %s", s.Addr(), r.Status, r.Raw)
		}
	}
	sim := e.Sims[0]
	sim.Hang("")
	a = submit(e, admin, first).ID
	e.Eventually(10*time.Second, "the first prompt to hang", func() bool { return slices.Contains(sim.Hanging(), a) })
	b = submit(e, admin, second).ID
	e.Eventually(10*time.Second, "the second prompt in the instance's queue", func() bool { return received(sim, b) })
	if got := getTask(e, admin, b); got.Status != "running" || got.InstanceID != sim.Addr() {
		t.Fatalf("prefetched task: status %s on %q, want running on %s", got.Status, got.InstanceID, sim.Addr())
	}
	if n := e.SimLog.Count(b); n != 0 {
		t.Fatalf("the prefetched prompt started %d times while the first one runs", n)
	}
	return e, admin, a, b
}

func body(workflow map[string]any) map[string]any { return map[string]any{"workflow": workflow} }

// successes counts the runs of promptID that ended in execution_success.
func successes(l *comfysim.Log, promptID string) int {
	n := 0
	for _, r := range l.Runs(promptID) {
		if r.Outcome == comfysim.OutcomeSuccess {
			n++
		}
	}
	return n
}

// TestPrefetchStartsTheNextAtOnce: the second task waits in ComfyUI's own
// queue and starts there the moment the first ends, each exactly once.
func TestPrefetchStartsTheNextAtOnce(t *testing.T) {
	t.Parallel()
	e, admin, a, b := prefetched(t, apptest.Options{Instances: 1}, body(basic("prefetch/a")), body(basic("prefetch/b")))
	e.Sims[0].Release()
	waitStatus(e, admin, a, "completed", 10*time.Second)
	waitStatus(e, admin, b, "completed", 10*time.Second)
	ra, rb := e.SimLog.Runs(a), e.SimLog.Runs(b)
	if len(ra) != 1 || len(rb) != 1 {
		t.Fatalf("runs: first %d, second %d; want 1 each", len(ra), len(rb))
	}
	if rb[0].Start.Before(ra[0].End) {
		t.Errorf("the second prompt started before the first ended")
	}
}

// TestPrefetchCancelQueued: cancelling the prompt that waits in ComfyUI's
// queue deletes it there; it never runs, and the one ahead is untouched.
func TestPrefetchCancelQueued(t *testing.T) {
	t.Parallel()
	e, admin, a, b := prefetched(t, apptest.Options{Instances: 1}, body(basic("prefetch/cq-a")), body(basic("prefetch/cq-b")))
	if r := e.Do("DELETE", "/api/tasks/"+b, admin, nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE queued task: %d %s", r.Status, r.Raw)
	}
	waitStatus(e, admin, b, "cancelled", 10*time.Second)
	if len(e.Sims[0].Interrupts()) != 0 {
		t.Errorf("cancelling a queued prompt sent %d interrupts; the running prompt is another task's", len(e.Sims[0].Interrupts()))
	}
	e.Sims[0].Release()
	waitStatus(e, admin, a, "completed", 10*time.Second)
	// Give the instance the time it would take to run b, had it stayed.
	waitStatus(e, admin, submit(e, admin, body(basic("prefetch/cq-c"))).ID, "completed", 10*time.Second)
	if n := e.SimLog.Count(b); n != 0 {
		t.Errorf("the cancelled queued prompt ran %d times, want 0", n)
	}
	if n := e.SimLog.Count(a); n != 1 {
		t.Errorf("the running prompt ran %d times, want 1", n)
	}
}

// TestPrefetchCancelRunning: cancelling the running prompt interrupts it
// alone; the prefetched one then runs, once.
func TestPrefetchCancelRunning(t *testing.T) {
	t.Parallel()
	e, admin, a, b := prefetched(t, apptest.Options{Instances: 1}, body(basic("prefetch/cr-a")), body(basic("prefetch/cr-b")))
	if r := e.Do("DELETE", "/api/tasks/"+a, admin, nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE running task: %d %s", r.Status, r.Raw)
	}
	waitStatus(e, admin, a, "cancelled", 10*time.Second)
	waitStatus(e, admin, b, "completed", 10*time.Second)
	if ra := e.SimLog.Runs(a); len(ra) != 1 || ra[0].Outcome != comfysim.OutcomeInterrupted {
		t.Errorf("cancelled prompt runs %+v, want one, interrupted", ra)
	}
	if n, ok := e.SimLog.Count(b), successes(e.SimLog, b); n != 1 || ok != 1 {
		t.Errorf("prefetched prompt ran %d times (%d succeeded), want 1", n, ok)
	}
}

// TestPrefetchTimeoutCountsFromStart: a task's timeout runs from when
// ComfyUI starts it, not from when it was placed in the instance's queue;
// the task ahead of it times out alone.
func TestPrefetchTimeoutCountsFromStart(t *testing.T) {
	t.Parallel()
	const timeout = 1000 // ms, for both tasks
	first, second := basic("prefetch/to-a"), basic("prefetch/to-b")
	e, admin, a, b := prefetched(t, apptest.Options{Instances: 1},
		map[string]any{"workflow": first, "timeout": timeout}, map[string]any{"workflow": second, "timeout": timeout})
	// b waits behind a for a's whole timeout, longer than its own.
	got := waitStatus(e, admin, a, "failed", 10*time.Second)
	if got.Error == nil || got.Error.Type != "timeout" {
		t.Fatalf("first task error %+v, want timeout", got.Error)
	}
	waitStatus(e, admin, b, "completed", 10*time.Second)
	if n, ok := e.SimLog.Count(b), successes(e.SimLog, b); n != 1 || ok != 1 {
		t.Errorf("prefetched prompt ran %d times (%d succeeded), want 1", n, ok)
	}
}

// TestPrefetchInstanceKilled: the instance dies with a prompt running and
// one queued behind it: both go to another instance; the queued one, which
// never started, runs exactly once.
func TestPrefetchInstanceKilled(t *testing.T) {
	t.Parallel()
	e, admin, a, b := prefetched(t, apptest.Options{Instances: 2, Configure: func(c *config.Config) {
		c.HealthCheck.Interval = config.Millis(200 * time.Millisecond)
		c.HealthCheck.Timeout = config.Millis(200 * time.Millisecond)
	}}, body(basic("prefetch/kill-a")), body(basic("prefetch/kill-b")))
	dead, other := e.Sims[0], e.Sims[1]
	if r := e.Do("PUT", "/api/instances/"+other.Addr(), admin, map[string]bool{"enabled": true}); r.Status != 200 {
		t.Fatalf("enable: %d %s", r.Status, r.Raw)
	}
	if err := dead.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b} {
		if got := waitStatus(e, admin, id, "completed", 20*time.Second); got.InstanceID != other.Addr() {
			t.Errorf("task %s completed on %s, want %s", id, got.InstanceID, other.Addr())
		}
		if ok := successes(e.SimLog, id); ok != 1 {
			t.Errorf("task %s succeeded %d times on the simulators, want 1", id, ok)
		}
	}
	if n := e.SimLog.Count(b); n != 1 {
		t.Errorf("the queued prompt started %d times, want 1 (on the surviving instance)", n)
	}
}

// TestPrefetchSurvivesRestart: the gateway dies with a prompt running and
// one waiting in the instance's queue; the next start finds both in the
// instance, reattaches them, and neither runs again.
func TestPrefetchSurvivesRestart(t *testing.T) {
	t.Parallel()
	e, _, a, b := prefetched(t, apptest.Options{Instances: 1}, body(basic("prefetch/rs-a")), body(basic("prefetch/rs-b")))
	e.Crash()
	e.Sims[0].Release() // a ends and b runs while no gateway watches
	e.Eventually(10*time.Second, "both prompts to run", func() bool {
		return successes(e.SimLog, a) == 1 && successes(e.SimLog, b) == 1
	})
	e.Restart()
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	for _, id := range []string{a, b} {
		waitStatus(e, admin, id, "completed", 20*time.Second)
		if n := e.SimLog.Count(id); n != 1 {
			t.Errorf("task %s ran %d times, want 1", id, n)
		}
	}
}

// TestPrefetchReattachQueued: killed and restarted while its prefetched prompt still
// waits in the instance's queue, the gateway reattaches it there: it runs
// once, when the prompt ahead ends.
func TestPrefetchReattachQueued(t *testing.T) {
	t.Parallel()
	e, _, a, b := prefetched(t, apptest.Options{Instances: 1}, body(basic("prefetch/rq-a")), body(basic("prefetch/rq-b")))
	e.CrashRestart()
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	if got := getTask(e, admin, b); got.Status != "running" {
		t.Fatalf("after restart the queued task is %s, want running (reattached)", got.Status)
	}
	e.Sims[0].Release()
	for _, id := range []string{a, b} {
		waitStatus(e, admin, id, "completed", 20*time.Second)
		if n, ok := e.SimLog.Count(id), successes(e.SimLog, id); n != 1 || ok != 1 {
			t.Errorf("task %s ran %d times (%d succeeded), want 1", id, n, ok)
		}
	}
}

// TestPrefetchDrainPullsBack: disabling an instance lets its running prompt
// finish there and takes the prefetched one back out of its queue, to run
// once on another instance.
func TestPrefetchDrainPullsBack(t *testing.T) {
	t.Parallel()
	e, admin, a, b := prefetched(t, apptest.Options{Instances: 2}, body(basic("prefetch/dr-a")), body(basic("prefetch/dr-b")))
	drained, other := e.Sims[0], e.Sims[1]
	if r := e.Do("PUT", "/api/instances/"+other.Addr(), admin, map[string]bool{"enabled": true}); r.Status != 200 {
		t.Fatalf("enable: %d %s", r.Status, r.Raw)
	}
	if r := e.Do("PUT", "/api/instances/"+drained.Addr(), admin, map[string]bool{"enabled": false}); r.Status != 200 {
		t.Fatalf("disable: %d %s", r.Status, r.Raw)
	}
	if got := waitStatus(e, admin, b, "completed", 10*time.Second); got.InstanceID != other.Addr() || got.Attempts != 1 {
		t.Errorf("pulled-back task completed on %s after %d attempts, want %s after 1 (the pull back is refunded)",
			got.InstanceID, got.Attempts, other.Addr())
	}
	drained.Release()
	if got := waitStatus(e, admin, a, "completed", 10*time.Second); got.InstanceID != drained.Addr() {
		t.Errorf("running task completed on %s, want %s where it ran", got.InstanceID, drained.Addr())
	}
	for _, id := range []string{a, b} {
		if n, ok := e.SimLog.Count(id), successes(e.SimLog, id); n != 1 || ok != 1 {
			t.Errorf("task %s ran %d times (%d succeeded), want 1", id, n, ok)
		}
	}
}
