package dispatch

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// driver drives one instance for this replica: its WebSocket, its runs,
// the collection of their outputs and the reconciliation of tasks left
// running there. It owns every goroutine it starts: stop cancels them and
// waits for them, so nothing it started touches the instance or the store
// after stop returns.
type driver struct {
	d      *Dispatcher
	inst   instance.Instance
	client *comfy.Client
	stream *comfy.Stream
	log    *slog.Logger

	// life is the driver's lifetime, from newDriver to stop: every run,
	// collection and reconcile of this instance runs under it. It is kept
	// here, not passed down, because runs are started by the scheduler,
	// whose context outlives the driver.
	life       context.Context
	cancelLoop context.CancelFunc
	// wg counts the goroutines the driver owns; Add only under mu while
	// !stopped, so stop's Wait sees every one.
	wg sync.WaitGroup
	// frames counts every frame received from the instance: a submitted
	// prompt followed by none is the sign of a deaf socket.
	frames atomic.Uint64
	// outputMissed is set once an output was not in the instance's
	// outputDir (see outputSource).
	outputMissed atomic.Bool
	// foreignC carries whether ComfyUI's queue holds others' prompts to
	// foreignLoop, the newest value only.
	foreignC chan bool
	// stepMu orders the store steps that may report the instance's run
	// state: a claim and a report of its own (report.go). Held across the
	// store call; never taken in a store callback.
	stepMu sync.Mutex

	// mu guards the fields below.
	mu          sync.Mutex
	stopped     bool
	enabled     bool
	alive       bool
	connected   bool
	reconciled  bool
	reconciling bool
	reserved    bool
	draining    bool
	collecting  int       // output collections under way
	live        int       // run goroutines under way (a run outlives its place in runs while it writes its outcome)
	leaseUntil  time.Time // the instance lease is ours until then, by our clock
	queue       int       // others' prompts in ComfyUI's queue, from the last status frame
	foreign     bool      // queue > 0 as last sent to foreignLoop
	// runs are this driver's runs in claim order: the first is the one
	// ComfyUI runs (or will run first), the others wait in its queue
	// behind it (Settings.Prefetch of them at most).
	runs   []*run
	idleAt time.Time
	// instLogged counts the instance_status events claims and reports of
	// their own logged: a run's end reported later in its task's finish
	// (endEvents) is left out once one of them said more (report.go).
	instLogged uint64
	// claimed is the task a claim took, until its run starts: the
	// instance's current task if no run is. claimLogged: the claim under
	// way reported the instance busy with it.
	claimed     *task.Task
	claimLogged bool
	// ckpt is the task.CheckpointKey of the model the instance loaded last,
	// as far as this replica knows ("" unknown): warm placement asks for it.
	ckpt string
}

// newDriver builds a driver whose lifetime ends with parent or stop. Its
// lifetime and stream are set here, before the dispatcher lists it: store
// events reach a listed driver at once, so an instance_status may redial
// the stream or start a reconcile (under the driver's life) before
// startLoop has run. The stream runs, and calls OnEvent, only once
// startLoop runs it.
func newDriver(parent context.Context, d *Dispatcher, in instance.Instance, leaseUntil time.Time) *driver {
	dr := &driver{
		d: d, inst: in, client: d.opts.NewClient(in, d.opts.ClientID),
		log: d.log.With("instance_id", in.ID), idleAt: time.Now(), leaseUntil: leaseUntil,
		foreignC: make(chan bool, 1),
	}
	ctx, cancel := context.WithCancel(parent)
	dr.life, dr.cancelLoop = ctx, cancel
	dr.stream = comfy.NewStream(dr.client, comfy.StreamOptions{
		OnEvent:      func(ev comfy.Event) { dr.onComfyEvent(ctx, ev) },
		OnConnect:    dr.onConnect,
		OnDisconnect: dr.onDisconnect,
		Logger:       dr.log,
	})
	return dr
}

// startLoop connects the instance's WebSocket and reconciles its tasks.
func (dr *driver) startLoop() {
	ctx := dr.life
	if st, err := dr.d.opts.Fleet.Get(ctx, dr.inst.ID); err == nil {
		dr.mu.Lock()
		dr.enabled, dr.alive, dr.ckpt = st.Enabled, st.Alive, st.LoadedCheckpoint
		dr.mu.Unlock()
	}
	dr.goOwned(func() { _ = dr.stream.Run(ctx) })
	dr.goOwned(func() { dr.foreignLoop(ctx) })
	dr.startReconcile()
}

// goOwned runs f on a goroutine stop waits for; false if the driver is
// already stopping (f does not run).
func (dr *driver) goOwned(f func()) bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.stopped {
		return false
	}
	dr.wg.Go(f)
	return true
}

// stop ends the driver and waits for everything it started. A run in
// progress stops without touching the instance and stays running in the
// store, for the next holder of the lease to reattach.
func (dr *driver) stop() {
	dr.mu.Lock()
	dr.stopped = true
	dr.mu.Unlock()
	dr.cancelLoop()
	dr.wg.Wait()
}

// holdsLease reports whether the instance lease is still ours by our clock.
// A run checks it before it acts on the instance; the scheduler claims
// nothing for a driver without it.
func (dr *driver) holdsLease() bool { return dr.leaseLeftFor(0) }

// leaseLeftFor reports whether the instance lease still has d to run. A
// submit asks for a margin: a replica frozen (or starved) between its
// claim and its submit must not put a prompt into an instance that
// another replica drives by now, and has maybe already requeued the task.
func (dr *driver) leaseLeftFor(d time.Duration) bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return time.Now().Add(d).Before(dr.leaseUntil)
}

// extendLease records a renewal that was asked for at until-TTL; a driver
// whose last reconcile could not finish tries again.
func (dr *driver) extendLease(until time.Time) {
	dr.mu.Lock()
	dr.leaseUntil = until
	retry := !dr.reconciled && !dr.reconciling
	dr.mu.Unlock()
	if retry {
		dr.startReconcile()
	}
}

// leaseExpiry is when the instance lease runs out by our clock.
func (dr *driver) leaseExpiry() time.Time {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.leaseUntil
}

// startReconcile reconciles the instance's tasks unless a reconcile runs;
// the driver takes no new task until it is done.
func (dr *driver) startReconcile() {
	dr.mu.Lock()
	if dr.reconciling {
		dr.mu.Unlock()
		return
	}
	dr.reconciling, dr.reconciled = true, false
	dr.mu.Unlock()
	if !dr.goOwned(func() { dr.reconcile(dr.life) }) {
		dr.mu.Lock()
		dr.reconciling = false
		dr.mu.Unlock()
	}
}

// reconcile reattaches, one after the other, the tasks the store says are
// running on this instance (left by a restart, a dead replica or a lease
// that moved), then removes from the instance's queue the gateway's prompts
// that no task runs any more (the instance was declared dead, its tasks
// requeued, and it came back still holding them).
func (dr *driver) reconcile(ctx context.Context) {
	defer func() {
		dr.mu.Lock()
		dr.reconciling = false
		dr.mu.Unlock()
	}()
	tasks, err := dr.d.opts.Store.TaskListRunning(ctx, &store.TaskListRunningParams{InstanceID: dr.inst.ID})
	if err != nil {
		if ctx.Err() == nil {
			dr.log.WarnContext(ctx, "list running tasks failed; reconcile later", "err", err)
		}
		return // not reconciled: the next lease tick or alive event retries
	}
	running := map[string]bool{}
	for _, t := range tasks {
		running[t.ID] = true
		if dr.find(t.ID) != nil {
			continue // still driven
		}
		// Each reattached run finds its own prompt on the instance (done,
		// running, or queued behind another: prefetched), so they are
		// followed side by side.
		dr.log.InfoContext(ctx, "reattaching task", "task_id", t.ID)
		if dr.start(ctx, t, true) == nil {
			return
		}
	}
	if !dr.sweep(ctx, running) {
		return
	}
	dr.mu.Lock()
	dr.reconciled = true
	dr.mu.Unlock()
	dr.d.Wake()
}

// sweep removes the gateway's prompts that no running task owns from the
// instance's queue; false means the instance could not be asked.
func (dr *driver) sweep(ctx context.Context, running map[string]bool) bool {
	if !dr.isAlive() {
		return true // nothing to ask; swept when it comes back
	}
	q, err := dr.client.Queue(ctx)
	if err != nil {
		if ctx.Err() == nil {
			dr.log.WarnContext(ctx, "read queue to sweep failed", "err", err)
		}
		return false
	}
	// A prompt of a run this driver has is not an orphan, whether or not
	// its task was running when the list was read.
	orphan := func(it comfy.QueueItem) bool {
		return strings.HasPrefix(it.ClientID, ClientIDPrefix) && !running[it.PromptID] && dr.find(it.PromptID) == nil
	}
	var pending []string
	for _, it := range q.Pending {
		if orphan(it) {
			pending = append(pending, it.PromptID)
		}
	}
	if len(pending) > 0 {
		dr.log.WarnContext(ctx, "removing prompts no task owns from the instance's queue", "prompt_ids", pending)
		if err := dr.client.DeleteQueued(ctx, pending...); err != nil {
			return false
		}
	}
	for _, it := range q.Running {
		if orphan(it) && dr.holdsLease() {
			dr.log.WarnContext(ctx, "interrupting a prompt no task owns", "prompt_id", it.PromptID)
			if err := dr.client.Interrupt(ctx, it.PromptID); err != nil {
				return false
			}
		}
	}
	return true
}

// ClientIDPrefix starts the WebSocket client id of every gateway process
// ("comfyfleet-<replica id>"): prompts whose client id has it are the
// gateway's, and the sweep may remove them.
const ClientIDPrefix = "comfyfleet-"

// find returns the run of taskID, or nil.
func (dr *driver) find(taskID string) *run {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.findLocked(taskID)
}

// findLocked is find with mu held.
func (dr *driver) findLocked(taskID string) *run {
	for _, r := range dr.runs {
		if r.task.ID == taskID {
			return r
		}
	}
	return nil
}

// load is how many runs the driver has.
func (dr *driver) load() int {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return len(dr.runs)
}

// allRuns returns a copy of the runs.
func (dr *driver) allRuns() []*run {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return slices.Clone(dr.runs)
}

// ready reports whether the instance can take a task now: it has fewer
// runs than one plus the prefetch depth (the next prompt waits in
// ComfyUI's own queue, so ComfyUI starts it the moment the current one
// ends), and every other condition holds.
func (dr *driver) ready(prefetch int) bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.enabled && dr.alive && dr.connected && dr.reconciled && !dr.stopped &&
		!dr.reserved && !dr.draining && len(dr.runs) <= prefetch && dr.queue == 0 &&
		!dr.holding() && !dr.placing() && time.Now().Before(dr.leaseUntil)
}

// placing reports whether a run's submit is still under way. Caller holds mu.
func (dr *driver) placing() bool {
	for _, r := range dr.runs {
		if !r.placed.Load() {
			return true
		}
	}
	return false
}

// holding reports whether a run holds the instance from new work (its
// prompt ignored an interrupt). Caller holds mu.
func (dr *driver) holding() bool {
	for _, r := range dr.runs {
		if r.holds.Load() {
			return true
		}
	}
	return false
}

// inComfy counts the runs whose prompt is (or is about to be) in ComfyUI's
// queue. Caller holds mu.
func (dr *driver) inComfy() int {
	n := 0
	for _, r := range dr.runs {
		if !r.out.Load() {
			n++
		}
	}
	return n
}

// isAlive reports whether health last saw the instance alive.
func (dr *driver) isAlive() bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.alive
}

// checkpoint is the CheckpointKey of the model the instance has loaded.
func (dr *driver) checkpoint() string {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.ckpt
}

func (dr *driver) idleSince() time.Time {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.idleAt
}

// reserve marks the driver as being handed a task.
func (dr *driver) reserve() bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.reserved {
		return false
	}
	dr.reserved = true
	return true
}

func (dr *driver) release() {
	dr.settle(func() { dr.reserved = false }) // a Drain waits for it too (busy)
}

// busy reports whether a run or an output collection is under way.
func (dr *driver) busy() bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return len(dr.runs) > 0 || dr.reserved || dr.collecting > 0 || dr.live > 0
}

func (dr *driver) setDraining() {
	dr.mu.Lock()
	dr.draining = true
	dr.mu.Unlock()
}

// start begins driving t under the driver's lifetime; reattach skips the
// submit and verifies instead. It returns nil when the driver is stopping:
// the task stays running in the store for the next holder of the lease.
func (dr *driver) start(ctx context.Context, t *task.Task, reattach bool) *run {
	r := newRun(dr, t, reattach)
	key := task.CheckpointKey(t.Checkpoints)
	dr.mu.Lock()
	if dr.claimed != nil && dr.claimed.ID == t.ID {
		dr.claimed = nil // its run is the instance's from now on
	}
	if dr.stopped || dr.life.Err() != nil {
		dr.reserved = false
		dr.mu.Unlock()
		return nil
	}
	dr.runs = append(dr.runs, r)
	dr.reserved = false
	loads := key != "" && key != dr.ckpt
	if loads {
		dr.ckpt = key
	}
	life := dr.life
	dr.live++
	dr.wg.Go(func() {
		defer dr.settle(func() { dr.live-- })
		r.execute(life)
	})
	if loads {
		dr.wg.Go(func() { dr.recordCheckpoint(life, key) })
	}
	dr.mu.Unlock()
	if loads {
		dr.d.opts.Metrics.CheckpointSwitched()
	}
	return r
}

// collect copies a finished run's outputs without holding the instance;
// stop cancels and waits for it (the next holder of the lease collects
// again: output file ids are stable). Options.OnRunEnd is told how the
// task ended, with ran (RunEnd.Ran).
func (dr *driver) collect(t *task.Task, entry *comfy.HistoryEntry, frames *streamed, ran time.Duration, also func() []event.Event, clock stageClock) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.stopped {
		return
	}
	dr.collecting++
	life := dr.life
	dr.wg.Go(func() {
		defer dr.settle(func() { dr.collecting-- })
		done := dr.d.collect(life, dr.outputs(), t, entry, frames, also, &clock)
		if f := dr.d.opts.OnRunEnd; f != nil && done != nil && life.Err() == nil {
			f(life, dr.inst.ID, RunEnd{Task: done, Ran: ran})
		}
	})
}

// outputs is where this instance's output files are read from.
func (dr *driver) outputs() outputSource {
	return outputSource{client: dr.client, dir: dr.inst.OutputDir, missed: &dr.outputMissed, log: dr.log}
}

// settle applies f (the end of a run or a collection) under mu and tells
// a Drain waiting for the replica to settle.
func (dr *driver) settle(f func()) {
	dr.mu.Lock()
	f()
	dr.mu.Unlock()
	select {
	case dr.d.settled <- struct{}{}:
	default:
	}
}

// recordCheckpoint stores the model the instance now loads, so a replica
// that adopts the instance, and the dashboard, know it.
func (dr *driver) recordCheckpoint(ctx context.Context, key string) {
	if _, err := dr.d.opts.Fleet.Update(ctx, &store.InstanceUpdateParams{ID: dr.inst.ID, LoadedCheckpoint: &key}); err != nil && ctx.Err() == nil {
		dr.log.WarnContext(ctx, "record loaded checkpoint failed", "err", err)
	}
}

// finishRun frees the instance after a run's outcome is known on it (output
// collection may still go on) and wakes the scheduler.
func (dr *driver) finishRun(ctx context.Context, r *run) {
	dr.mu.Lock()
	if i := slices.Index(dr.runs, r); i >= 0 {
		dr.runs = slices.Delete(dr.runs, i, i+1)
	}
	dr.idleAt = time.Now()
	r.endMark, r.endDeferred = dr.instLogged, r.collects
	dr.mu.Unlock()
	dr.d.Wake()
	if r.endDeferred {
		return // its instance_status goes with the task's finish (endEvents)
	}
	dr.report(ctx, r.endMark, false)
}

// state is the instance's state as this driver knows it.
func (dr *driver) state() instance.State {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return instance.State{ID: dr.inst.ID, Alive: dr.alive, Enabled: dr.enabled, Busy: dr.queue > 0}
}

// foreignHold is how long ComfyUI's queue must hold others' prompts
// before the instance is stored busy with them.
const foreignHold = time.Second

// noteForeign hands whether ComfyUI's queue holds others' prompts to
// foreignLoop, replacing a value it has not taken yet.
func (dr *driver) noteForeign(busy bool) {
	for {
		select {
		case dr.foreignC <- busy:
			return
		default:
		}
		select {
		case <-dr.foreignC:
		default:
		}
	}
}

// foreignLoop stores whether ComfyUI's queue holds others' prompts (the
// stored part of an instance's busy): busy once the queue has held them
// for foreignHold, idle again as soon as it no longer does. Another
// client's short prompts, such as a second gateway's on a shared instance,
// cost no store write each; the scheduler follows the queue itself
// (driver.ready), at once. One loop, so the writes land in the order of
// the changes; a write that fails is tried again after foreignHold.
func (dr *driver) foreignLoop(ctx context.Context) {
	var stored, want bool
	hold := time.NewTimer(foreignHold)
	hold.Stop()
	defer hold.Stop()
	var held <-chan time.Time // hold runs: to wait out the hold, or to retry
	arm := func() {
		hold.Reset(foreignHold)
		held = hold.C
	}
	record := func(busy bool) {
		if _, err := dr.d.opts.Fleet.Update(ctx, &store.InstanceUpdateParams{ID: dr.inst.ID, Busy: &busy}); err != nil {
			if ctx.Err() == nil {
				dr.log.WarnContext(ctx, "record foreign queue failed; trying again", "err", err)
				arm()
			}
			return
		}
		stored = busy
	}
	for {
		select {
		case <-ctx.Done():
			return
		case want = <-dr.foreignC:
			switch {
			case want && !stored && held == nil:
				arm()
			case !want && !stored && held != nil:
				hold.Stop() // the hold ends short of its time
				held = nil
			case !want && stored:
				if held != nil {
					hold.Stop()
					held = nil
				}
				record(false)
			}
		case <-held:
			held = nil
			if want != stored {
				record(want)
			}
		}
	}
}

// onComfyEvent routes one ComfyUI event; it runs on the read loop and must be quick.
func (dr *driver) onComfyEvent(ctx context.Context, ev comfy.Event) {
	dr.frames.Add(1)
	dr.mu.Lock()
	var r *run
	if ev.PromptID != "" {
		r = dr.findLocked(ev.PromptID)
	}
	var changed bool
	var foreignRuns []*run
	if ev.Type == comfy.EventStatus {
		// Our own prompts are in there too.
		dr.queue = max(0, ev.QueueRemaining-dr.inComfy())
		changed = (dr.queue > 0) != dr.foreign
		dr.foreign = dr.queue > 0
		for _, fr := range dr.runs {
			if fr.foreign.Load() {
				foreignRuns = append(foreignRuns, fr)
			}
		}
	}
	ready := dr.queue == 0
	foreign := dr.foreign
	dr.mu.Unlock()
	if changed {
		dr.noteForeign(foreign)
	}
	if ev.Type == comfy.EventStatus && ready {
		dr.d.Wake()
	}
	// A reattached prompt submitted under another client id (another
	// replica's) sends its events there; the queue changing is the cue to
	// ask the instance where it is.
	for _, fr := range foreignRuns {
		fr.signal(fr.resyncC)
	}
	if r != nil && !r.frames.take(ev) {
		r.deliver(ev)
	}
}

func (dr *driver) onConnect(ctx context.Context) {
	dr.mu.Lock()
	dr.connected = true
	runs := slices.Clone(dr.runs)
	dr.mu.Unlock()
	for _, r := range runs {
		r.signal(r.resyncC)
	}
	if f := dr.d.opts.OnConnect; f != nil {
		f(dr.inst.ID)
	}
	dr.d.Wake()
}

func (dr *driver) onDisconnect(error) {
	dr.mu.Lock()
	dr.connected = false
	runs := slices.Clone(dr.runs)
	dr.mu.Unlock()
	for _, r := range runs {
		r.gap.Store(true) // before the next connection delivers anything
		r.frames.disconnected()
	}
}

// instanceReadTimeout bounds onInstanceStatus's read of the instance.
const instanceReadTimeout = 2 * time.Second

// onInstanceStatus follows health and admin changes of this instance.
//
// Every instance_status carries alive and enabled, but only the store's
// row says them with authority: a run-state report (report.go) carries
// the driver's view when it was built, which can predate an admin's or
// health's change logged just before it, and would turn that change back
// here. So an event that says other than the driver knows is checked
// against the store before it is believed (rare: such changes are).
func (dr *driver) onInstanceStatus(ctx context.Context, ev event.Event) {
	var v struct {
		Alive   bool `json:"alive"`
		Enabled bool `json:"enabled"`
	}
	if json.Unmarshal(ev.Data, &v) != nil {
		return
	}
	dr.mu.Lock()
	differs := v.Alive != dr.alive || v.Enabled != dr.enabled
	dr.mu.Unlock()
	if differs {
		// The row is written before the change's event is logged, so it
		// is at least as new as ev. The read holds up every instance's
		// events: it is bounded, and a store that does not answer leaves
		// the driver's view as it is (it claims nothing meanwhile anyway).
		rctx, cancel := context.WithTimeout(ctx, instanceReadTimeout)
		st, err := dr.d.opts.Store.InstanceGet(rctx, dr.inst.ID)
		cancel()
		if err != nil {
			dr.log.WarnContext(ctx, "instance_status not checked against the store; ignored", "err", err)
			return
		}
		v.Alive, v.Enabled = st.Alive, st.Enabled
	}
	dr.mu.Lock()
	wasAlive := dr.alive
	dr.alive, dr.enabled = v.Alive, v.Enabled
	back := !wasAlive && v.Alive
	if back {
		dr.ckpt = "" // back from down: most likely restarted, with no model loaded
	}
	runs, connected := slices.Clone(dr.runs), dr.connected
	dr.mu.Unlock()
	for _, r := range runs {
		if wasAlive && !v.Alive {
			r.signal(r.lostC)
		}
		if !v.Enabled {
			// Disabled (drained): the running prompt finishes, a prefetched
			// one goes back to the queue for another instance.
			r.signal(r.pullC)
		}
	}
	if back {
		if !connected {
			dr.stream.Redial() // health saw it up: no reason to wait out the backoff
		}
		// It may come back from a freeze still holding prompts whose tasks
		// were requeued meanwhile: sweep them before it gets new work.
		dr.startReconcile()
	}
}

// cancel interrupts the run of taskID if this driver has it.
func (dr *driver) cancel(taskID string) bool {
	if r := dr.find(taskID); r != nil {
		r.signal(r.cancelC)
		return true
	}
	return false
}
