package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/dispatch"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// countSteps counts claims of their own and inserts with a claim.
type countSteps struct {
	store.Store
	claims, inserts, insertClaims, claimedAtInsert atomic.Int64
	instancePublishes                              atomic.Int64
}

func (c *countSteps) TaskInsert(ctx context.Context, p *store.TaskInsertParams) (*task.Task, error) {
	c.inserts.Add(1)
	return c.Store.TaskInsert(ctx, p)
}

func (c *countSteps) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	c.claims.Add(1)
	return c.Store.TaskClaim(ctx, p)
}

// Publish counts the steps of their own that log an instance_status.
func (c *countSteps) Publish(ctx context.Context, evs ...event.Event) error {
	for _, ev := range evs {
		if ev.Type == event.TypeInstanceStatus {
			c.instancePublishes.Add(1)
			break
		}
	}
	return c.Store.Publish(ctx, evs...)
}

func (c *countSteps) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, cl *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	c.insertClaims.Add(1)
	t, claimed, err := c.Store.TaskInsertClaim(ctx, p, cl)
	if claimed != nil {
		c.claimedAtInsert.Add(1)
	}
	return t, claimed, err
}

// TestInsertTaskClaimsForAnIdleInstance: a task submitted while an
// instance waits for work is claimed in its insert's step and runs, with
// no claim of its own, its task_status running logged with the claim; the
// task's events come in their order.
func TestInsertTaskClaimsForAnIdleInstance(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	st := &countSteps{Store: r.st}
	r.fl = fleet.New(st, discard()) // the dispatcher's instance events go through st too
	if _, _, err := r.fl.Set(t.Context(), r.instances(r.sims...)); err != nil {
		t.Fatal(err)
	}
	rep := r.run("a", st, nil)
	const n = 10
	for i := range n {
		waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
		id := uuid.NewString()
		evs, err := event.Pending(&task.Task{ID: id, Owner: "alice", Status: task.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		before, err := r.st.LastEventSeq(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tk, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: id, Owner: "alice", Workflow: workflow(fmt.Sprintf("at-submit-%d", i)), Now: time.Now(), Events: evs,
		})
		if err != nil {
			t.Fatal(err)
		}
		r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
		// The events are logged with the finish, which waitStatus saw.
		var got []string
		for _, d := range loggedSince(t, r.st, before) {
			ev := d.Event
			switch {
			case ev.TaskID == id && ev.Type == event.TypeTaskStatus:
				got = append(got, d.Status)
			case ev.Type == event.TypeInstanceStatus && d.Busy && d.CurrentTaskID == id:
				got = append(got, "instance busy with it")
			case ev.Type == event.TypeInstanceStatus && !d.Busy && d.CurrentTaskID == "":
				got = append(got, "instance idle")
			case ev.Type == event.TypeInstanceStatus:
				got = append(got, fmt.Sprintf("instance busy %v with %q", d.Busy, d.CurrentTaskID))
			}
		}
		want := []string{"pending", "instance busy with it", "running", "completed", "instance idle"}
		if !slices.Equal(got, want) {
			t.Fatalf("task %d: events %q, want %q", i, got, want)
		}
	}
	t.Logf("%d tasks one after another: %d inserts with a claim, %d claimed there, %d plain inserts, %d claims of their own",
		n, st.insertClaims.Load(), st.claimedAtInsert.Load(), st.inserts.Load(), st.claims.Load())
	// A scheduling pass (woken by the run before's end) may hold the
	// instance at the moment of a submit: that task is inserted alone and
	// claimed by the pass after. Every insert that could claim did.
	if got, want := st.claimedAtInsert.Load(), st.insertClaims.Load(); got != want {
		t.Errorf("%d of %d inserts with a claim claimed their task, want all", got, want)
	}
	if got := st.insertClaims.Load() + st.inserts.Load(); got != n {
		t.Errorf("%d inserts for %d tasks", got, n)
	}
	if got := st.insertClaims.Load(); got < n/2 {
		t.Errorf("%d of %d tasks inserted with a claim for an instance ready for work, want most", got, n)
	}
	// A run's start and end are logged with its claim and its finish.
	if got := st.instancePublishes.Load(); got != 0 {
		t.Errorf("%d steps of their own for instance_status for %d tasks, want none", got, n)
	}
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestInstanceStatusFollowsPrefetch: with a prompt prefetched behind the
// running one, the instance stays busy, its current task the one ComfyUI
// runs: the first task's end names the prefetched task, and the instance
// is idle only after the last.
func TestInstanceStatusFollowsPrefetch(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{NodeDelay: 50 * time.Millisecond})
	rep := r.run("a", r.st, func(o *dispatch.Options) { o.Settings.Prefetch = 1 })
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	before, err := r.st.LastEventSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 2 {
		id := uuid.NewString()
		evs, err := event.Pending(&task.Task{ID: id, Owner: "alice", Status: task.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		tk, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: id, Owner: "alice", Workflow: workflow(fmt.Sprintf("prefetch-%d", i)), Now: time.Now(), Events: evs,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	for _, id := range ids {
		r.waitStatus(id, task.StatusCompleted, 10*time.Second)
	}
	var got []string
	for _, d := range loggedSince(t, r.st, before) {
		ev := d.Event
		name := map[string]string{ids[0]: "first", ids[1]: "second", "": "none"}[d.CurrentTaskID]
		switch ev.Type {
		case event.TypeTaskStatus:
			if d.Status != "pending" {
				got = append(got, map[string]string{ids[0]: "first", ids[1]: "second"}[ev.TaskID]+" "+d.Status)
			}
		case event.TypeInstanceStatus:
			got = append(got, fmt.Sprintf("instance busy=%v with %s", d.Busy, name))
		}
	}
	want := []string{
		"instance busy=true with first", "first running", "second running",
		"first completed", "instance busy=true with second",
		"second completed", "instance busy=false with none",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// lostInsertClaimAnswer applies the first insert that claims a task but
// answers it as a store that died mid-call: the insert and the claim
// happened (one step), the replica knows neither.
type lostInsertClaimAnswer struct {
	store.Store
	lost atomic.Bool
}

func (l *lostInsertClaimAnswer) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, c *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	t, claimed, err := l.Store.TaskInsertClaim(ctx, p, c)
	if err == nil && claimed != nil && l.lost.CompareAndSwap(false, true) {
		return nil, nil, fmt.Errorf("insert task %s: %w: EOF", p.ID, store.ErrUnavailable)
	}
	return t, claimed, err
}

// TestInsertClaimAnswerLost: a task inserted and claimed at submit by a
// call whose answer was lost is found by the driver's reconcile and runs,
// instead of staying running on the instance with no run for good.
func TestInsertClaimAnswerLost(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	st := &lostInsertClaimAnswer{Store: r.st}
	rep := r.run("a", st, nil)
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	id := uuid.NewString()
	if _, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
		ID: id, Owner: "alice", Workflow: workflow("lost-insert-claim"), Now: time.Now(),
	}); err == nil || !st.lost.Load() {
		t.Fatalf("InsertTask: err = %v, answer lost = %v; want the lost answer's error", err, st.lost.Load())
	}
	r.waitStatus(id, task.StatusCompleted, 10*time.Second)
	if n := r.log.Count(id); n != 1 {
		t.Errorf("runs = %d, want 1", n)
	}
}

// TestClaimedAtSubmitQueuesNothing: the task_queued of a task claimed in
// its insert's step counts for nothing in the scheduler, whether it comes
// before the insert returns or after; a task inserted after it does.
func TestClaimedAtSubmitQueuesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{NodeDelay: 200 * time.Millisecond})
	st := &countSteps{Store: r.st}
	rep := r.run("a", st, func(o *dispatch.Options) { o.Settings.Prefetch = 0 })
	// A scheduling pass may hold the instance at the moment of a submit
	// (the task is then inserted alone): try again with another task.
	var id string
	var seen uint64
	for attempt := 0; st.claimedAtInsert.Load() == 0; attempt++ {
		if attempt == 5 {
			t.Fatal("no task claimed in its insert's step in 5 tries")
		}
		if id != "" {
			// Inserted alone: its task_queued counts, once handled.
			waitFor(t, 10*time.Second, "the task_queued of a task inserted alone counted", func() bool { return rep.d.QueuedSeen() > seen })
			r.waitStatus(id, task.StatusCompleted, 10*time.Second)
		}
		waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
		seen = rep.d.QueuedSeen()
		id = uuid.NewString()
		evs, err := event.Pending(&task.Task{ID: id, Owner: "alice", Status: task.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: id, Owner: "alice", Workflow: workflow(fmt.Sprintf("queues-nothing-%d", attempt)), Now: time.Now(), Events: evs,
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A task inserted after it, as another replica would: its task_queued
	// comes after the first's, so once it is counted the first was seen.
	marker := uuid.NewString()
	mevs, err := event.Pending(&task.Task{ID: marker, Owner: "alice", Status: task.StatusPending})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.TaskInsert(t.Context(), &store.TaskInsertParams{
		ID: marker, Owner: "alice", Workflow: workflow("queues-nothing-marker"), Now: time.Now(), Events: mevs,
	}); err != nil {
		t.Fatal(err)
	}
	// Events are handled in their order: once the later task's is counted,
	// the first's was handled before it.
	waitFor(t, 10*time.Second, "the later task's task_queued counted", func() bool { return rep.d.QueuedSeen() > seen })
	if got := rep.d.QueuedSeen() - seen; got != 1 {
		t.Errorf("%d task_queued events counted, want 1 (the later task's only)", got)
	}
	r.waitStatus(id, task.StatusCompleted, 10*time.Second)
	r.waitStatus(marker, task.StatusCompleted, 10*time.Second)
}

// endDuringClaim holds the first insert-and-claim it sees until the task
// before it completed: the run ahead ends while the claim is under way.
type endDuringClaim struct {
	store.Store
	before atomic.Value // string: the task that must end first
	held   atomic.Bool
}

func (e *endDuringClaim) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, c *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	if id, _ := e.before.Load().(string); id != "" && e.held.CompareAndSwap(false, true) {
		for {
			t, err := e.Store.TaskGet(ctx, id)
			if err != nil {
				return nil, nil, err
			}
			if t.Status == task.StatusCompleted {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return e.Store.TaskInsertClaim(ctx, p, c)
}

// TestPrefetchClaimOutlivesTheRunAhead: a task claimed to wait behind the
// running one, whose claim is written only after that run ended, makes
// the instance busy with it: the instance is not left reported idle while
// it runs.
func TestPrefetchClaimOutlivesTheRunAhead(t *testing.T) {
	t.Parallel()
	// A scheduling pass may hold the instance at the moment of the second
	// submit (it is then inserted alone): try again on a new rig.
	for attempt := 0; !prefetchClaimOutlivesTheRunAhead(t); attempt++ {
		if attempt == 4 {
			t.Fatal("the second task was not claimed in its insert's step in 5 tries")
		}
	}
}

func prefetchClaimOutlivesTheRunAhead(t *testing.T) bool {
	r := newRig(t, 1, comfysim.Options{NodeDelay: 50 * time.Millisecond})
	st := &endDuringClaim{Store: r.st}
	rep := r.run("a", st, func(o *dispatch.Options) { o.Settings.Prefetch = 1 })
	defer rep.stop(t)()
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	before, err := r.st.LastEventSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 2 {
		// The second is submitted once the first's prompt is placed, with
		// the instance ready to take one behind it.
		waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
		id := uuid.NewString()
		if i == 1 {
			st.before.Store(ids[0])
		}
		if _, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: id, Owner: "alice", Workflow: workflow(fmt.Sprintf("outlives-%d", i)), Now: time.Now(),
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		r.waitStatus(id, task.StatusCompleted, 10*time.Second)
	}
	if !st.held.Load() {
		return false
	}
	var got []string
	for _, d := range loggedSince(t, r.st, before) {
		ev := d.Event
		name := map[string]string{ids[0]: "first", ids[1]: "second", "": "none"}
		switch ev.Type {
		case event.TypeTaskStatus:
			got = append(got, name[ev.TaskID]+" "+d.Status)
		case event.TypeInstanceStatus:
			got = append(got, fmt.Sprintf("instance busy=%v with %s", d.Busy, name[d.CurrentTaskID]))
		}
	}
	want := []string{
		"instance busy=true with first", "first running",
		"first completed", "instance busy=false with none",
		"second running", "instance busy=true with second",
		"second completed", "instance busy=false with none",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	return true
}

// heldInsertClaim holds every insert-and-claim until release is closed, then
// inserts the task and claims nothing.
type heldInsertClaim struct {
	store.Store
	in      chan struct{}
	release chan struct{}
}

func (h *heldInsertClaim) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, _ *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	h.in <- struct{}{}
	<-h.release
	t, err := h.Store.TaskInsert(ctx, p)
	return t, nil, err
}

// TestDrainWaitsOutAClaimAtSubmit: Drain waits for a submit's claim under
// way on an instance, and returns once it ended having claimed nothing.
func TestDrainWaitsOutAClaimAtSubmit(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	st := &heldInsertClaim{Store: r.st, in: make(chan struct{}), release: make(chan struct{})}
	rep := r.run("a", st, nil)
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	inserted := make(chan error, 1)
	go func() {
		_, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: uuid.NewString(), Owner: "alice", Workflow: workflow("drain-claim"), Now: time.Now(),
		})
		inserted <- err
	}()
	<-st.in
	drained := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	go func() { drained <- rep.d.Drain(ctx) }()
	waitFor(t, 10*time.Second, "Drain called", rep.d.Draining)
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a claim under way", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(st.release)
	if err := <-inserted; err != nil {
		t.Fatal(err)
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain after the claim ended: %v, want nil", err)
	}
}

// loggedEvent is an event of the log with the fields of task_status and
// instance_status the tests read.
type loggedEvent struct {
	Event         event.Event
	Status        string
	Busy          bool
	CurrentTaskID string
}

// loggedSince returns the events logged after seq before.
func loggedSince(t *testing.T, st store.Store, before int64) []loggedEvent {
	t.Helper()
	logged, err := st.EventsAfter(t.Context(), &store.EventsAfterParams{After: before})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]loggedEvent, len(logged))
	for i, ev := range logged {
		var d struct {
			Status        string
			Busy          bool
			CurrentTaskID string
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		out[i] = loggedEvent{Event: ev, Status: d.Status, Busy: d.Busy, CurrentTaskID: d.CurrentTaskID}
	}
	return out
}

// TestPrefetchWaitsForTheSubmitsAnswer: with a prefetch depth of 2 and an
// instance slow to answer POST /prompt (the real one answers late while it
// runs a prompt), the driver claims nothing more until the answer is in:
// prompts reach ComfyUI in the order of their claims, and each runs once,
// in that order.
func TestPrefetchWaitsForTheSubmitsAnswer(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	sim := r.sims[0]
	rep := r.run("a", r.st, func(o *dispatch.Options) { o.Settings.Prefetch = 2 })
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	sim.InjectHTTPFault(comfysim.HTTPFault{Route: "POST /prompt", Hold: hold})
	ids := insertTasks(t, rep.d, "answer", 3)
	waitFor(t, 10*time.Second, "the first prompt at the instance", func() bool { return len(sim.Prompts()) == 1 })
	if n := rep.d.ReadyInstances(); n != 0 {
		t.Errorf("%d instances ready while a submit awaits its answer, want 0", n)
	}
	for _, id := range ids[1:] {
		if got, err := r.st.TaskGet(t.Context(), id); err != nil || got.Status != task.StatusPending {
			t.Errorf("task %s while the first submit is unanswered: %v %v, want pending", id, got.Status, err)
		}
	}
	release()
	var starts []time.Time
	for _, id := range ids {
		r.waitStatus(id, task.StatusCompleted, 10*time.Second)
		runs := r.log.Runs(id)
		if len(runs) != 1 {
			t.Fatalf("task %s ran %d times, want once", id, len(runs))
		}
		starts = append(starts, runs[0].Start)
	}
	var sent []string
	for _, p := range sim.Prompts() {
		sent = append(sent, p.PromptID)
	}
	if !slices.Equal(sent, ids) {
		t.Errorf("prompts reached the instance in the order %q, want the claims' %q", sent, ids)
	}
	if !slices.IsSortedFunc(starts, func(a, b time.Time) int { return a.Compare(b) }) {
		t.Errorf("runs started at %v, want the claims' order", starts)
	}
}

// insertTasks submits n tasks of alice through d, as the API does, one
// after another, and returns their ids.
func insertTasks(t *testing.T, d *dispatch.Dispatcher, prefix string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := uuid.NewString()
		if _, err := d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: id, Owner: "alice", Workflow: workflow(fmt.Sprintf("%s-%d", prefix, i)), Now: time.Now(),
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// stageRecorder is a dispatch.Metrics that keeps the stages reported.
type stageRecorder struct {
	mu     sync.Mutex
	stages []string
	took   map[string][]time.Duration
}

func (*stageRecorder) TaskClaimed(*task.Task)          {}
func (*stageRecorder) TaskFinished(*task.Task)         {}
func (*stageRecorder) TaskRequeued(*task.Task, string) {}
func (*stageRecorder) CheckpointSwitched()             {}
func (*stageRecorder) SocketDeaf()                     {}
func (*stageRecorder) InstanceSuspect()                {}

func (s *stageRecorder) RunStage(stage string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stages = append(s.stages, stage)
	s.took[stage] = append(s.took[stage], d)
}

// TestRunStagesReported: each completed run reports its five stages once,
// in order, and a node's delay shows in its execution.
func TestRunStagesReported(t *testing.T) {
	t.Parallel()
	const delay = 100 * time.Millisecond
	r := newRig(t, 1, comfysim.Options{NodeDelay: delay})
	rec := &stageRecorder{took: map[string][]time.Duration{}}
	rep := r.run("a", r.st, func(o *dispatch.Options) {
		o.Metrics = rec
		o.Settings.Prefetch = 1
	})
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	ids := insertTasks(t, rep.d, "stages", 2)
	for _, id := range ids {
		r.waitStatus(id, task.StatusCompleted, 10*time.Second)
	}
	waitFor(t, 5*time.Second, "both runs' stages", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.stages) == 10
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	one := []string{dispatch.StageSubmit, dispatch.StageQueued, dispatch.StageExecution, dispatch.StageCollect, dispatch.StageFinish}
	if want := append(slices.Clone(one), one...); !slices.Equal(rec.stages, want) {
		t.Fatalf("stages %q, want %q", rec.stages, want)
	}
	for stage, ds := range rec.took {
		for _, d := range ds {
			if d < 0 {
				t.Errorf("stage %s took %v", stage, d)
			}
		}
	}
	// The stamps are taken as the run handles the frames, which can be a
	// moment after they came: half the node's delay is a safe floor.
	for i, d := range rec.took[dispatch.StageExecution] {
		if d < delay/2 {
			t.Errorf("run %d: execution %v, far less than its node's %v", i, d, delay)
		}
	}
}

// TestStaleRunReportKeepsAdminState: a run-state report built before an
// admin disabled the instance, and logged after the admin's change, does
// not enable the instance again for the scheduler: the store's row says
// enabled with authority. (Before, prefetch claims racing a disable turned
// it back on and the disabled instances ran the queue.)
func TestStaleRunReportKeepsAdminState(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, comfysim.Options{})
	rep := r.run("a", r.st, nil)
	waitFor(t, 10*time.Second, "both instances ready", func() bool { return rep.d.ReadyInstances() == 2 })
	ids := []string{}
	for _, in := range r.fl.Instances() {
		ids = append(ids, in.ID)
	}
	off, on := false, true
	for _, id := range ids {
		if _, err := r.fl.Update(t.Context(), &store.InstanceUpdateParams{ID: id, Enabled: &off}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "both instances disabled", func() bool { return rep.d.ReadyInstances() == 0 })
	// The first instance's driver reports its run state with the view it
	// had before the disable; then the second is enabled again for real.
	stale := event.Instance(instance.State{ID: ids[0], Alive: true, Enabled: true}, "")
	if err := r.st.Publish(t.Context(), stale); err != nil {
		t.Fatal(err)
	}
	if _, err := r.fl.Update(t.Context(), &store.InstanceUpdateParams{ID: ids[1], Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	// Events reach the dispatcher in the order they were logged: once the
	// second is ready, the stale report has been handled.
	waitFor(t, 10*time.Second, "the second instance ready", func() bool { return rep.d.ReadyInstances() >= 1 })
	if n := rep.d.ReadyInstances(); n != 1 {
		t.Fatalf("%d instances ready, want only the one enabled", n)
	}
}
