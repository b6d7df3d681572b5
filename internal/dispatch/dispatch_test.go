package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/dispatch"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// rig is one store and fleet of simulated instances; dispatchers (replicas)
// are started on it with run.
type rig struct {
	t    *testing.T
	st   store.Store
	fl   *fleet.Fleet
	bl   blob.Store
	sims []*comfysim.Sim
	log  *comfysim.Log
}

func newRig(t *testing.T, n int, simOpts comfysim.Options) *rig {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	simOpts.Log = comfysim.NewLog()
	sims, err := comfysim.StartFleet(n, "127.0.0.1:0", simOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range sims {
			s.Close()
		}
	})
	bl, err := blob.NewDisk(t.TempDir(), blob.NoSync())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, st: st, fl: fleet.New(st, discard()), bl: bl, sims: sims, log: simOpts.Log}
	if _, _, err := r.fl.Set(t.Context(), r.instances(sims...)); err != nil {
		t.Fatal(err)
	}
	for _, s := range sims {
		r.setAlive(s, true)
	}
	return r
}

func discard() *slog.Logger {
	if os.Getenv("COMFYFLEET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (r *rig) instances(sims ...*comfysim.Sim) []instance.Instance {
	var out []instance.Instance
	for _, s := range sims {
		host, port, _ := net.SplitHostPort(s.Addr())
		p := 0
		for _, c := range port {
			p = 10*p + int(c-'0')
		}
		out = append(out, instance.Instance{ID: s.Addr(), ServerID: "sim", ServerName: "sim", IP: host, Port: p})
	}
	return out
}

// setAlive plays the health checker.
func (r *rig) setAlive(s *comfysim.Sim, alive bool) {
	r.t.Helper()
	if _, err := r.fl.Update(context.Background(), &store.InstanceUpdateParams{ID: s.Addr(), Alive: &alive}); err != nil {
		r.t.Fatal(err)
	}
}

// replica is one running dispatcher.
type replica struct {
	d      *dispatch.Dispatcher
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// run starts a dispatcher named name on the rig; it stops at cleanup, and
// must have returned without error by then.
func (r *rig) run(name string, st store.Store, change func(*dispatch.Options)) *replica {
	r.t.Helper()
	opts := dispatch.Options{
		Store: st, Fleet: r.fl, Blob: r.bl, Log: discard().With("replica", name), Replica: name,
		ClientID: dispatch.ClientIDPrefix + name, FileIDKey: []byte("test-key"),
		LeaseTTL: time.Second, DeafAfter: 300 * time.Millisecond,
		Settings: dispatch.Settings{
			TaskTimeout: time.Minute, MaxAttempts: 3, PublicBaseURL: "http://gw", InterruptGrace: time.Second,
		},
	}
	if change != nil {
		change(&opts)
	}
	d := dispatch.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	rep := &replica{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { rep.done <- d.Run(ctx) }()
	r.t.Cleanup(rep.stop(r.t))
	return rep
}

// stop returns a function that stops the dispatcher and checks Run's
// return; calling it again does nothing.
func (rep *replica) stop(t *testing.T) func() {
	return func() { rep.once.Do(func() { rep.stopOnce(t) }) }
}

func (rep *replica) stopOnce(t *testing.T) {
	{
		rep.cancel()
		select {
		case err := <-rep.done:
			if err != nil {
				t.Errorf("Dispatcher.Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Dispatcher.Run did not return within 20s of its cancel")
		}
	}
}

// workflow is EmptyImage -> SaveImage.
func workflow(prefix string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": prefix}},
	})
	return b
}

// submit inserts a pending task and announces it, as the API does.
func (r *rig) submit(prefix string) *task.Task {
	r.t.Helper()
	tk, err := r.st.TaskInsert(r.t.Context(), &store.TaskInsertParams{
		ID: uuid.NewString(), Owner: "alice", Workflow: workflow(prefix), Now: time.Now(),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := event.PublishQueued(r.t.Context(), r.st, tk); err != nil {
		r.t.Fatal(err)
	}
	return tk
}

// wait polls the task until cond holds, failing after timeout.
func (r *rig) wait(id string, timeout time.Duration, what string, cond func(*task.Task) bool) *task.Task {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tk, err := r.st.TaskGet(context.Background(), id)
		if err != nil {
			r.t.Fatal(err)
		}
		if cond(tk) {
			return tk
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %v waiting for %s: task is %s (%+v)", timeout, what, tk.Status, tk.Error)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) waitStatus(id string, want task.Status, timeout time.Duration) *task.Task {
	r.t.Helper()
	return r.wait(id, timeout, "status "+string(want), func(tk *task.Task) bool { return tk.Status == want })
}

func until(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCompletes(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.run("a", r.st, nil)
	tk := r.submit("ok")
	done := r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
	if done.Attempts != 1 || len(done.Result.Files) != 1 || done.LeaseOwner != "" {
		t.Errorf("completed task = attempts %d, files %v, lease %q", done.Attempts, done.Result.Files, done.LeaseOwner)
	}
}

// refuseOnce is a transport whose first POST /prompt fails as a refused
// connection: the prompt never reached the instance.
type refuseOnce struct {
	base    http.RoundTripper
	refused atomic.Bool
}

func (t *refuseOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && req.URL.Path == "/prompt" && t.refused.CompareAndSwap(false, true) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return t.base.RoundTrip(req)
}

// TestUnreachableAtDispatch: a submit that never reached the instance
// sends the task back to the queue without spending an attempt.
func TestUnreachableAtDispatch(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	rt := &refuseOnce{base: http.DefaultTransport.(*http.Transport).Clone()}
	r.run("a", r.st, func(o *dispatch.Options) {
		o.NewClient = func(in instance.Instance, id string) *comfy.Client {
			return comfy.New(in.BaseURL(), id, &http.Client{Transport: rt})
		}
	})
	tk := r.submit("unreachable")
	done := r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
	if !rt.refused.Load() || done.Attempts != 1 || r.log.Count(tk.ID) != 1 {
		t.Errorf("refused=%v attempts=%d runs=%d, want true, 1 and 1", rt.refused.Load(), done.Attempts, r.log.Count(tk.ID))
	}
}

// TestCancelBeforeRunStarts: a cancel request that arrives for a task the
// scheduler has not handed to a run yet is kept and applied when it starts.
func TestCancelBeforeRunStarts(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.sims[0].Hang("")
	a := r.run("a", r.st, nil)
	until(t, 5*time.Second, "replica a to be subscribed and driving", func() bool { return a.d.Drivers() == 1 })
	id := uuid.NewString()
	// The cancel event comes first, as when DELETE lands between the
	// claim and the run's start.
	cancelEv := &task.Task{ID: id, Owner: "alice"}
	if err := event.Publish(t.Context(), r.st, event.TypeTaskCancelRequested, cancelEv, event.TaskCancelledData{TaskID: id}); err != nil {
		t.Fatal(err)
	}
	tk, err := r.st.TaskInsert(t.Context(), &store.TaskInsertParams{ID: id, Owner: "alice", Workflow: workflow("early"), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// Events are handled in order: the cancel is noted before the wake-up.
	_ = event.PublishQueued(t.Context(), r.st, tk)
	r.waitStatus(id, task.StatusCancelled, 10*time.Second)
	r.sims[0].Release()
}

// TestDrainRemovedInstance: an instance removed from the config finishes
// its run before its driver stops, and gets no new task meanwhile.
func TestDrainRemovedInstance(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, comfysim.Options{})
	for _, s := range r.sims {
		s.Hang("")
	}
	rep := r.run("a", r.st, nil)
	until(t, 5*time.Second, "both instances driven", func() bool { return rep.d.Drivers() == 2 })
	tk := r.submit("drain")
	running := r.waitStatus(tk.ID, task.StatusRunning, 10*time.Second)
	var victim, other *comfysim.Sim = r.sims[0], r.sims[1]
	if victim.Addr() != running.InstanceID {
		victim, other = other, victim
	}
	other.Release()
	if _, _, err := r.fl.Set(t.Context(), r.instances(other)); err != nil {
		t.Fatal(err)
	}
	next := r.submit("drain/next")
	done := r.waitStatus(next.ID, task.StatusCompleted, 10*time.Second)
	if done.InstanceID != other.Addr() {
		t.Errorf("new task ran on %s, want the remaining instance %s", done.InstanceID, other.Addr())
	}
	if rep.d.Drivers() != 2 {
		t.Errorf("%d drivers while the removed instance still runs, want 2", rep.d.Drivers())
	}
	victim.Release()
	r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
	until(t, 5*time.Second, "the removed instance's driver to stop", func() bool { return rep.d.Drivers() == 1 })
}

// TestPromptGoneRequeues: an instance that restarted and forgot the prompt
// (found neither in its queue nor its history on reconnect) gets the task
// requeued and run again.
func TestPromptGoneRequeues(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.sims[0].Hang("")
	r.run("a", r.st, nil)
	tk := r.submit("gone")
	r.waitStatus(tk.ID, task.StatusRunning, 10*time.Second)
	until(t, 5*time.Second, "the prompt to hang", func() bool { return len(r.sims[0].Hanging()) == 1 })
	r.sims[0].Stop()
	if err := r.sims[0].Restart(); err != nil {
		t.Fatal(err)
	}
	done := r.waitStatus(tk.ID, task.StatusCompleted, 15*time.Second)
	if done.Attempts != 2 || r.log.Count(tk.ID) != 2 {
		t.Errorf("attempts=%d runs=%d, want 2 and 2", done.Attempts, r.log.Count(tk.ID))
	}
}

// unreachable is a store whose lease calls fail while down is set, as when
// a replica loses its connection to Redis.
type unreachable struct {
	store.Store
	down atomic.Bool
}

func (u *unreachable) LeaseAcquire(ctx context.Context, p *store.LeaseParams) (bool, error) {
	if u.down.Load() {
		return false, store.ErrUnavailable
	}
	return u.Store.LeaseAcquire(ctx, p)
}

// TestLeaseLoss: a replica that cannot renew its instance lease stops
// driving the instance once the lease runs out, without touching it; the
// replica that takes the lease over reattaches the run, which completes
// once, and the first replica can no longer change the task.
func TestLeaseLoss(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.sims[0].Hang("")
	cut := &unreachable{Store: r.st}
	a := r.run("a", cut, nil)
	until(t, 5*time.Second, "replica a to drive the instance", func() bool { return a.d.Drivers() == 1 })
	tk := r.submit("lease")
	r.waitStatus(tk.ID, task.StatusRunning, 10*time.Second)
	until(t, 5*time.Second, "the prompt to hang", func() bool { return len(r.sims[0].Hanging()) == 1 })

	cut.down.Store(true)
	until(t, 5*time.Second, "replica a to stop driving", func() bool { return a.d.Drivers() == 0 })
	b := r.run("b", r.st, nil)
	until(t, 5*time.Second, "replica b to drive the instance", func() bool { return b.d.Drivers() == 1 })
	r.wait(tk.ID, 5*time.Second, "replica b to take the task's lease", func(tk *task.Task) bool { return tk.LeaseOwner == "b" })
	r.sims[0].Release()
	done := r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
	if done.Attempts != 1 || r.log.Count(tk.ID) != 1 || len(r.sims[0].Interrupts()) != 0 {
		t.Errorf("attempts=%d runs=%d interrupts=%v, want 1, 1 and none", done.Attempts, r.log.Count(tk.ID), r.sims[0].Interrupts())
	}
}

// slowInstanceGet is a store whose InstanceGet waits for release: a driver
// is then listed by its dispatcher but has not finished starting.
type slowInstanceGet struct {
	store.Store
	release chan struct{}
}

func (s *slowInstanceGet) InstanceGet(ctx context.Context, id string) (instance.State, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return instance.State{}, ctx.Err()
	}
	return s.Store.InstanceGet(ctx, id)
}

// TestInstanceStatusWhileDriverStarts: an instance coming back alive
// while its driver is listed but not yet started (its first store read
// still under way) neither crashes the dispatcher nor stops the driver
// from running tasks afterwards.
func TestInstanceStatusWhileDriverStarts(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.setAlive(r.sims[0], false)
	slow := &slowInstanceGet{Store: r.st, release: make(chan struct{})}
	fl := fleet.New(slow, discard())
	if _, _, err := fl.Set(t.Context(), r.instances(r.sims...)); err != nil {
		t.Fatal(err)
	}
	a := r.run("a", r.st, func(o *dispatch.Options) { o.Fleet = fl })
	until(t, 5*time.Second, "replica a to list a driver", func() bool { return a.d.Drivers() == 1 })
	r.setAlive(r.sims[0], true) // instance_status reaches the driver before its start is done
	time.Sleep(100 * time.Millisecond)
	close(slow.release)
	tk := r.submit("starting")
	r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
}

// TestDeafSocket: a socket detached by ComfyUI (another client took its
// client id) is noticed after a submit with no frame, and reconnected.
func TestDeafSocket(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	a := r.run("a", r.st, nil)
	until(t, 5*time.Second, "replica a to drive the instance", func() bool { return a.d.Drivers() == 1 })
	first := r.submit("deaf/first")
	r.waitStatus(first.ID, task.StatusCompleted, 10*time.Second)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	intruder, _, err := websocket.Dial(ctx, "ws://"+r.sims[0].Addr()+"/ws?clientId="+dispatch.ClientIDPrefix+"a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.CloseNow()
	if _, _, err := intruder.Read(ctx); err != nil { // its status frame: it is registered
		t.Fatal(err)
	}
	tk := r.submit("deaf/run")
	done := r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
	if done.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", done.Attempts)
	}
}

// TestStopWritesNothingAfterRun: once Run has returned, nothing the
// dispatcher started writes to the store or calls the instance.
func TestStopWritesNothingAfterRun(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.sims[0].Hang("")
	rec := &recorder{Store: r.st}
	a := r.run("a", rec, nil)
	tk := r.submit("stop")
	r.waitStatus(tk.ID, task.StatusRunning, 10*time.Second)
	until(t, 5*time.Second, "the prompt to hang", func() bool { return len(r.sims[0].Hanging()) == 1 })
	a.stop(t)()
	rec.closed.Store(true)
	r.sims[0].Release() // the prompt finishes now: a leftover run would write its outcome
	until(t, 5*time.Second, "the prompt to finish", func() bool { return len(r.sims[0].Hanging()) == 0 })
	// The outcome is on the instance; give a leftover goroutine the chance
	// to act on it (the check below is the test; this only lets it fail).
	time.Sleep(200 * time.Millisecond)
	if n := rec.after.Load(); n != 0 {
		t.Errorf("%d store writes after Run returned", n)
	}
	if got, _ := r.st.TaskGet(t.Context(), tk.ID); got.Status != task.StatusRunning {
		t.Errorf("task is %s after its driver stopped, want running (for the next lease holder)", got.Status)
	}
}

// recorder counts task writes made after closed is set.
type recorder struct {
	store.Store
	closed atomic.Bool
	after  atomic.Int64
}

func (r *recorder) note() {
	if r.closed.Load() {
		r.after.Add(1)
	}
}

func (r *recorder) TaskFinish(ctx context.Context, p *store.TaskFinishParams) (*task.Task, error) {
	r.note()
	return r.Store.TaskFinish(ctx, p)
}

func (r *recorder) TaskRequeue(ctx context.Context, p *store.TaskRequeueParams) (*task.Task, error) {
	r.note()
	return r.Store.TaskRequeue(ctx, p)
}

func (r *recorder) TaskProgress(ctx context.Context, p *store.TaskProgressParams) error {
	r.note()
	return r.Store.TaskProgress(ctx, p)
}

// lostClaimAnswer applies the first claim but answers it as a store that
// died mid-call: the claim happened, the replica does not know it.
type lostClaimAnswer struct {
	store.Store
	lost atomic.Bool
}

func (l *lostClaimAnswer) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	t, err := l.Store.TaskClaim(ctx, p)
	if err == nil && l.lost.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("claim: %w: EOF", store.ErrUnavailable)
	}
	return t, err
}

// TestClaimAnswerLost: a task claimed by a call whose answer was lost is
// found by the driver's reconcile and runs, instead of staying running on
// the instance with no run for good.
func TestClaimAnswerLost(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	st := &lostClaimAnswer{Store: r.st}
	r.run("a", st, nil)
	tk := r.submit("lost-claim")
	done := r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
	if !st.lost.Load() || r.log.Count(tk.ID) != 1 {
		t.Errorf("claim answer lost=%v, runs=%d; want true and 1", st.lost.Load(), r.log.Count(tk.ID))
	}
	t.Logf("completed after %d attempts", done.Attempts)
}
