package app_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/metrics/metricstest"
)

// TestTwoGatewaysShareAnInstance: two gateways with stores of their own in
// front of one ComfyUI each get their own prompts' events (one client id
// per gateway process), so all 100 tasks complete promptly, and the first
// keeps working after the second stops. With a shared client id one of them
// went deaf and its tasks waited for the task timeout.
func TestTwoGatewaysShareAnInstance(t *testing.T) {
	t.Parallel()
	a := apptest.Start(t, apptest.Options{Instances: 1})
	b := apptest.Start(t, apptest.Options{Sims: a.Sims})
	if a.App().Replica() == b.App().Replica() {
		t.Fatalf("both gateways have replica id %q", a.App().Replica())
	}
	tokA, tokB := a.Login(apptest.AdminUser, apptest.AdminPass), b.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(a, tokA)
	waitAlive(b, tokB)

	var ids [2][]string
	for i := range 50 {
		ids[0] = append(ids[0], submit(a, tokA, map[string]any{"workflow": basic("shared/a")}).ID)
		ids[1] = append(ids[1], submit(b, tokB, map[string]any{"workflow": basic("shared/b")}).ID)
		_ = i
	}
	// The task timeout is 10 minutes: anything waiting for it fails here.
	for _, id := range ids[0] {
		waitStatus(a, tokA, id, "completed", 30*time.Second)
	}
	for _, id := range ids[1] {
		waitStatus(b, tokB, id, "completed", 30*time.Second)
	}
	b.Stop()
	after := submit(a, tokA, map[string]any{"workflow": basic("shared/after")})
	waitStatus(a, tokA, after.ID, "completed", 10*time.Second)
	for _, id := range append(append(ids[0], ids[1]...), after.ID) {
		if n := a.SimLog.Count(id); n != 1 {
			t.Errorf("task %s ran %d times, want once", id, n)
		}
	}
}

// TestDeafSocketReconnects: a socket ComfyUI detached (another client
// registered under its client id) stays open and answers pings but gets no
// events. A prompt followed by no frame at all makes the gateway reconnect,
// and the task completes long before its timeout.
func TestDeafSocketReconnects(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	warm := submit(e, admin, map[string]any{"workflow": basic("deaf/warm")})
	waitStatus(e, admin, warm.ID, "completed", 10*time.Second)

	// An intruder takes the gateway's client id: ComfyUI now sends
	// everything for that id to the intruder, which never reads.
	id := "comfyfleet-" + e.App().Replica()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	intruder, _, err := websocket.Dial(ctx, "ws://"+e.Sims[0].Addr()+"/ws?clientId="+id, nil)
	if err != nil {
		t.Fatalf("dial as the gateway: %v", err)
	}
	defer intruder.CloseNow()
	_, _, _ = intruder.Read(ctx) // its status frame: registered

	v := submit(e, admin, map[string]any{"workflow": basic("deaf/run"), "timeout": 120000})
	done := waitStatus(e, admin, v.ID, "completed", 20*time.Second)
	if done.Attempts != 1 || e.SimLog.Count(v.ID) != 1 {
		t.Errorf("attempts=%d runs=%d, want 1 and 1", done.Attempts, e.SimLog.Count(v.ID))
	}
	// Completing within 20 s of a 120 s timeout is the proof: a deaf
	// socket still answers pings. On a starved machine a ping can time out
	// first and reconnect the socket before the deaf check does.
	if got := metricstest.Scrape(t, e.URL()+"/metrics", admin).Value(t, "comfyfleet_instance_socket_deaf_total"); got < 1 {
		t.Logf("comfyfleet_instance_socket_deaf_total = %v: the socket reconnected for another reason first", got)
	}
}

// TestRedialWhenInstanceBack: an instance that was down long enough for
// the WebSocket backoff to grow gets its next task within 2 s of health
// seeing it alive again.
func TestRedialWhenInstanceBack(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	sim := e.Sims[0]
	sim.Stop()
	e.Eventually(10*time.Second, "health to see the instance down", func() bool { return !allAlive(e, admin, 1) })
	// Long enough for several failed dials: the backoff reaches 4-8 s.
	time.Sleep(6 * time.Second) // not a wait for a condition: the backoff must grow
	v := submit(e, admin, map[string]any{"workflow": basic("redial/run")})
	if err := sim.Restart(); err != nil {
		t.Fatal(err)
	}
	var aliveAt time.Time
	e.Eventually(10*time.Second, "health to see the instance back", func() bool {
		if allAlive(e, admin, 1) {
			aliveAt = time.Now()
			return true
		}
		return false
	})
	got := waitStatus(e, admin, v.ID, "completed", 20*time.Second)
	started, err := time.Parse(time.RFC3339Nano, *got.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	if lag := started.Sub(aliveAt); lag > 2*time.Second {
		t.Errorf("the task started %v after health saw the instance alive, want within 2s", lag)
	}
}

// TestInterruptIgnored: an instance that ignores interrupt (a process stuck
// in a native call) cannot keep a task running past its timeout or its
// cancel: the task ends a grace period later, and the instance takes no
// new task until it lets go of the prompt.
func TestInterruptIgnored(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Scheduler.InterruptGrace = config.Millis(time.Second)
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	sim := e.Sims[0]
	sim.IgnoreInterrupts(true)

	sim.Hang("")
	timedOut := submit(e, admin, map[string]any{"workflow": basic("stuck/timeout"), "timeout": 500})
	got := waitStatus(e, admin, timedOut.ID, "failed", 10*time.Second)
	if got.Error == nil || got.Error.Type != "timeout" {
		t.Errorf("error = %+v, want timeout", got.Error)
	}
	next := submit(e, admin, map[string]any{"workflow": basic("stuck/next")})
	if n := getTask(e, admin, next.ID); n.Status != "pending" {
		t.Errorf("next task is %s while the instance still runs the stuck prompt, want pending", n.Status)
	}
	sim.IgnoreInterrupts(false)
	sim.Release()
	waitStatus(e, admin, next.ID, "completed", 15*time.Second)

	sim.IgnoreInterrupts(true)
	sim.Hang("")
	cancelled := submit(e, admin, map[string]any{"workflow": basic("stuck/cancel")})
	waitStatus(e, admin, cancelled.ID, "running", 10*time.Second)
	e.Eventually(5*time.Second, "the prompt to hang", func() bool { return len(sim.Hanging()) == 1 })
	if r := e.Do("DELETE", "/api/tasks/"+cancelled.ID, admin, nil); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Raw)
	}
	waitStatus(e, admin, cancelled.ID, "cancelled", 10*time.Second)
	sim.IgnoreInterrupts(false)
	sim.Release()
}

// TestHistoryGarbageFailsTheRun: an instance that answers the finished
// prompt's /history with errors fails that run with history_unreadable,
// once, instead of running the task again as if instances were lost.
func TestHistoryGarbageFailsTheRun(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	// A run that saw every event of its prompt needs no /history; one whose
	// socket dropped mid-run reads it to learn the outcome.
	sim := e.Sims[0]
	sim.Hang("")
	v := submit(e, admin, map[string]any{"workflow": basic("history/garbage"), "timeout": 60000})
	e.Eventually(10*time.Second, "the prompt to hang", func() bool { return len(sim.Hanging()) == 1 })
	sim.InjectHTTPFault(comfysim.HTTPFault{Route: "/history/", Times: 1 << 20})
	sim.DropWebSockets()
	sim.Release()
	got := waitStatus(e, admin, v.ID, "failed", 30*time.Second)
	e.Sims[0].ClearFaults()
	if got.Error == nil || got.Error.Type != "history_unreadable" || got.Attempts != 1 || e.SimLog.Count(v.ID) != 1 {
		t.Errorf("error=%+v attempts=%d runs=%d, want history_unreadable after 1 attempt and 1 run",
			got.Error, got.Attempts, e.SimLog.Count(v.ID))
	}
}

// TestFrozenInstanceSwept: an instance that stops answering mid-run is
// declared dead and its task runs elsewhere; when it comes back still
// holding the old prompt, the gateway interrupts it before giving the
// instance new work, so the same work does not run twice.
func TestFrozenInstanceSwept(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	for _, s := range e.Sims {
		s.Hang("")
	}
	v := submit(e, admin, map[string]any{"workflow": basic("frozen/run")})
	running := waitStatus(e, admin, v.ID, "running", 10*time.Second)
	frozen, other := e.Sims[0], e.Sims[1]
	if frozen.Addr() != running.InstanceID {
		frozen, other = other, frozen
	}
	other.Release()
	e.Eventually(5*time.Second, "the prompt to hang", func() bool { return len(frozen.Hanging()) == 1 })
	// Frozen: every request fails, the socket goes too; the prompt stays.
	frozen.InjectHTTPFault(comfysim.HTTPFault{Times: 1 << 20, Drop: true})
	frozen.DropWebSockets()
	done := waitStatus(e, admin, v.ID, "completed", 20*time.Second)
	if done.InstanceID != other.Addr() {
		t.Fatalf("completed on %s, want the other instance %s", done.InstanceID, other.Addr())
	}
	frozen.ClearFaults() // it resumes, still holding the prompt
	e.Eventually(10*time.Second, "the orphaned prompt to be interrupted", func() bool { return sawInterrupt(frozen, v.ID) })
	e.Eventually(5*time.Second, "the orphaned prompt to end", func() bool { return len(frozen.Hanging()) == 0 })
	runs := e.SimLog.Runs(v.ID)
	success := 0
	for _, r := range runs {
		if r.Outcome == comfysim.OutcomeSuccess {
			success++
		}
	}
	if success != 1 {
		t.Errorf("runs = %+v, want exactly one success", runs)
	}
}

// TestFilesUnwritable: with the file store unable to take writes for a few
// seconds mid-run, no task fails and none is lost; meanwhile health says
// so and no new task is claimed.
func TestFilesUnwritable(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	dir := e.Config.Files.Dir
	for i := range 5 {
		v := submit(e, admin, map[string]any{"workflow": basic("files/warm")})
		waitStatus(e, admin, v.ID, "completed", 10*time.Second)
		_ = i
	}
	// Make the directory unusable in a way root cannot write through either:
	// move it away and put a plain file in its place.
	aside := dir + ".aside"
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var mu sync.Mutex
	for range 20 {
		v := submit(e, admin, map[string]any{"workflow": basic("files/during")})
		mu.Lock()
		ids = append(ids, v.ID)
		mu.Unlock()
	}
	e.Eventually(10*time.Second, "health to report the file store", func() bool {
		r := e.Do("GET", "/api/health", "", nil)
		return strings.Contains(string(r.Raw), `"files":"unwritable"`)
	})
	if r := e.Do("GET", "/api/health", "", nil); strings.Contains(string(r.Raw), filepath.Dir(dir)) {
		t.Errorf("health shows the server's paths: %s", r.Raw)
	}
	time.Sleep(2 * time.Second) // the store stays broken for a while, as a real disk would
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, dir); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		got := waitStatus(e, admin, id, "completed", 60*time.Second)
		assertPNG(t, got.Result.Files[0])
	}
	e.Eventually(5*time.Second, "health to recover", func() bool {
		r := e.Do("GET", "/api/health", "", nil)
		return strings.Contains(string(r.Raw), `"files":"writable"`)
	})
}

// TestOutputBounds: an output larger than files.maxOutputBytes and a /view
// that stalls each fail their task with output_failed, in bounded time,
// instead of holding it running.
func TestOutputBounds(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Files.MaxOutputBytes = 16
		c.Files.OutputTimeout = config.Millis(time.Second)
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	big := submit(e, admin, map[string]any{"workflow": basic("bounds/big")})
	got := waitStatus(e, admin, big.ID, "failed", 10*time.Second)
	if got.Error == nil || got.Error.Type != "output_failed" || !strings.Contains(got.Error.Message, "maxOutputBytes") {
		t.Errorf("error = %+v, want output_failed naming files.maxOutputBytes", got.Error)
	}

	e.Sims[0].InjectHTTPFault(comfysim.HTTPFault{Route: "/view", Times: 1 << 20, Stall: true})
	stalled := submit(e, admin, map[string]any{"workflow": basic("bounds/stall")})
	got = waitStatus(e, admin, stalled.ID, "failed", 20*time.Second)
	if got.Error == nil || got.Error.Type != "output_failed" {
		t.Errorf("error = %+v, want output_failed", got.Error)
	}
	e.Sims[0].ClearFaults()
}
