package dispatch

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// driver drives one instance for this replica: its WebSocket, its run and
// the reconciliation of tasks left running there.
type driver struct {
	d      *Dispatcher
	inst   instance.Instance
	client *comfy.Client
	log    *slog.Logger

	cancelLoop context.CancelFunc
	done       chan struct{}

	// mu guards the fields below.
	mu         sync.Mutex
	enabled    bool
	alive      bool
	connected  bool
	reconciled bool
	reserved   bool
	draining   bool
	queue      int  // others' prompts in ComfyUI's queue, from the last status frame
	foreign    bool // queue > 0 as last recorded in the store
	cur        *run
	idleAt     time.Time
	// ckpt is the task.CheckpointKey of the model the instance loaded last,
	// as far as this replica knows ("" unknown): warm placement asks for it.
	ckpt string
}

func newDriver(d *Dispatcher, in instance.Instance) *driver {
	return &driver{
		d: d, inst: in, client: d.opts.NewClient(in, d.opts.ClientID),
		log: d.log.With("instance_id", in.ID), done: make(chan struct{}), idleAt: time.Now(),
	}
}

// startLoop connects the instance's WebSocket and reconciles its tasks.
func (dr *driver) startLoop(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	dr.cancelLoop = cancel
	if st, err := dr.d.opts.Fleet.Get(ctx, dr.inst.ID); err == nil {
		dr.mu.Lock()
		dr.enabled, dr.alive, dr.ckpt = st.Enabled, st.Alive, st.LoadedCheckpoint
		dr.mu.Unlock()
	}
	stream := comfy.NewStream(dr.client, comfy.StreamOptions{
		OnEvent:      func(ev comfy.Event) { dr.onComfyEvent(ctx, ev) },
		OnConnect:    dr.onConnect,
		OnDisconnect: dr.onDisconnect,
		Logger:       dr.log,
	})
	var wg sync.WaitGroup
	wg.Go(func() { _ = stream.Run(ctx) })
	wg.Go(func() { dr.reconcile(ctx) })
	go func() {
		wg.Wait()
		close(dr.done)
	}()
}

// stop ends the loop and waits for it; a run in progress is abandoned (it
// stays running in the store).
func (dr *driver) stop() {
	dr.cancelLoop()
	<-dr.done
}

// reconcile reattaches, one after the other, the tasks the store says are
// running on this instance (left by a restart or a dead replica).
func (dr *driver) reconcile(ctx context.Context) {
	tasks, err := dr.d.opts.Store.TaskListRunning(ctx, &store.TaskListRunningParams{InstanceID: dr.inst.ID})
	if err != nil {
		dr.log.WarnContext(ctx, "list running tasks failed; reconcile later", "err", err)
	}
	for _, t := range tasks {
		dr.log.InfoContext(ctx, "reattaching task", "task_id", t.ID)
		r := dr.start(ctx, t, true)
		select {
		case <-ctx.Done():
			return
		case <-r.finished:
		}
	}
	dr.mu.Lock()
	dr.reconciled = true
	dr.mu.Unlock()
	dr.d.Wake()
}

// ready reports whether the instance can take a task now.
func (dr *driver) ready() bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.enabled && dr.alive && dr.connected && dr.reconciled &&
		!dr.reserved && !dr.draining && dr.cur == nil && dr.queue == 0
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
	dr.mu.Lock()
	dr.reserved = false
	dr.mu.Unlock()
}

func (dr *driver) busy() bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.cur != nil || dr.reserved
}

func (dr *driver) setDraining() {
	dr.mu.Lock()
	dr.draining = true
	dr.mu.Unlock()
}

// start begins driving t; reattach skips the submit and verifies instead.
func (dr *driver) start(ctx context.Context, t *task.Task, reattach bool) *run {
	r := newRun(dr, t, reattach)
	key := task.CheckpointKey(t.Checkpoints)
	dr.mu.Lock()
	dr.cur = r
	dr.reserved = false
	loads := key != "" && key != dr.ckpt
	if loads {
		dr.ckpt = key
	}
	dr.mu.Unlock()
	if loads {
		dr.d.opts.Metrics.CheckpointSwitched()
		go dr.recordCheckpoint(ctx, key)
	}
	go r.execute(ctx)
	return r
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
	if dr.cur == r {
		dr.cur = nil
	}
	dr.idleAt = time.Now()
	dr.mu.Unlock()
	dr.d.Wake()
	dr.d.opts.Fleet.PublishRun(ctx, dr.state(), "")
}

// state is the instance's state as this driver knows it.
func (dr *driver) state() instance.State {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return instance.State{ID: dr.inst.ID, Alive: dr.alive, Enabled: dr.enabled, Busy: dr.queue > 0}
}

// recordForeign stores whether ComfyUI's queue holds others' prompts, when
// that changed (rare: someone else uses the instance).
func (dr *driver) recordForeign(ctx context.Context, busy bool) {
	if _, err := dr.d.opts.Fleet.Update(ctx, &store.InstanceUpdateParams{ID: dr.inst.ID, Busy: &busy}); err != nil && ctx.Err() == nil {
		dr.log.WarnContext(ctx, "record foreign queue failed", "err", err)
	}
}

// onComfyEvent routes one ComfyUI event; it runs on the read loop and must be quick.
func (dr *driver) onComfyEvent(ctx context.Context, ev comfy.Event) {
	dr.mu.Lock()
	r := dr.cur
	var changed bool
	if ev.Type == comfy.EventStatus {
		dr.queue = ev.QueueRemaining
		if r != nil && dr.queue > 0 {
			dr.queue-- // our own prompt is in there
		}
		changed = (dr.queue > 0) != dr.foreign
		dr.foreign = dr.queue > 0
	}
	ready := dr.cur == nil && dr.queue == 0
	foreign := dr.foreign
	dr.mu.Unlock()
	if changed {
		go dr.recordForeign(ctx, foreign)
	}
	if ev.Type == comfy.EventStatus && ready {
		dr.d.Wake()
	}
	if r != nil && ev.PromptID == r.task.ID && !r.frames.take(ev) {
		r.deliver(ev)
	}
}

func (dr *driver) onConnect(ctx context.Context) {
	dr.mu.Lock()
	dr.connected = true
	r := dr.cur
	dr.mu.Unlock()
	if r != nil {
		r.signal(r.resyncC)
	}
	dr.d.Wake()
}

func (dr *driver) onDisconnect(error) {
	dr.mu.Lock()
	dr.connected = false
	r := dr.cur
	dr.mu.Unlock()
	if r != nil {
		r.frames.disconnected()
	}
}

// onInstanceStatus follows health and admin changes of this instance.
func (dr *driver) onInstanceStatus(ctx context.Context, ev store.Event) {
	var v struct {
		Alive   bool `json:"alive"`
		Enabled bool `json:"enabled"`
	}
	if json.Unmarshal(ev.Data, &v) != nil {
		return
	}
	dr.mu.Lock()
	wasAlive := dr.alive
	dr.alive, dr.enabled = v.Alive, v.Enabled
	if !wasAlive && v.Alive {
		dr.ckpt = "" // back from down: most likely restarted, with no model loaded
	}
	r := dr.cur
	dr.mu.Unlock()
	if wasAlive && !v.Alive && r != nil {
		r.signal(r.lostC)
	}
}

// cancel interrupts the run of taskID if this driver has it.
func (dr *driver) cancel(taskID string) bool {
	dr.mu.Lock()
	r := dr.cur
	dr.mu.Unlock()
	if r != nil && r.task.ID == taskID {
		r.signal(r.cancelC)
		return true
	}
	return false
}
