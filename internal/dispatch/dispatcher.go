// Package dispatch places queued tasks on free, healthy ComfyUI instances
// and drives each run to its end: one long-lived WebSocket per instance with
// a fixed client id, progress, completion from /history, output collection,
// cancel, timeouts, requeue after a lost instance and reconciliation of
// tasks left running by a restart or a dead replica.
//
// A replica drives an instance only while it holds the store lease
// "instance:<id>", so an instance runs one task at a time across all
// replicas. Scheduling is event-driven: a task_queued event, an instance
// turning ready or a run ending wakes the scheduler; nothing polls.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
	"golang.org/x/sync/errgroup"
)

// Settings are the live-tunable knobs of the dispatcher.
type Settings struct {
	// TaskTimeout bounds a run when the task has no timeout of its own.
	TaskTimeout time.Duration
	// MaxAttempts bounds runs of one task after lost instances.
	MaxAttempts int
	// PublicBaseURL prefixes result URLs.
	PublicBaseURL string
	// WarmWindow is how far a task for the model an instance has loaded may
	// jump ahead (store.TaskClaimParams.WarmWindow); zero is FIFO placement.
	WarmWindow time.Duration
	// Prefetch is how many prompts wait in an instance's own queue behind
	// the one it runs, so it starts the next the moment the current one
	// ends; 0 gives it one prompt at a time.
	Prefetch int
	// InterruptGrace is how long an interrupted prompt (timeout, cancel)
	// may stay on its instance before the task ends anyway. Zero means 30s.
	InterruptGrace time.Duration
	// MaxOutputBytes limits one output file; zero means unlimited.
	MaxOutputBytes int64
	// OutputTimeout bounds the copy of one output file. Zero means 10m.
	OutputTimeout time.Duration
}

// Defaults of the zero Settings fields that have one.
const (
	defaultInterruptGrace = 30 * time.Second
	defaultOutputTimeout  = 10 * time.Minute
)

func (s Settings) interruptGrace() time.Duration {
	if s.InterruptGrace <= 0 {
		return defaultInterruptGrace
	}
	return s.InterruptGrace
}

func (s Settings) outputTimeout() time.Duration {
	if s.OutputTimeout <= 0 {
		return defaultOutputTimeout
	}
	return s.OutputTimeout
}

// Options configure a Dispatcher.
type Options struct {
	Store store.Store
	Fleet *fleet.Fleet
	Blob  blob.Store
	Log   *slog.Logger
	// Replica is this gateway's id: the holder name of its leases.
	Replica string
	// ClientID is the fixed WebSocket client id used with every instance.
	ClientID string
	// FileIDKey keys the ids of collected output files (stable across retries, unguessable).
	FileIDKey []byte
	// LeaseTTL is how long an instance lease lasts without renewal. Default 15s.
	LeaseTTL time.Duration
	// DeafAfter is how long a submitted prompt may be followed by no frame
	// at all before the instance's socket is taken for deaf and
	// reconnected. Default 5s.
	DeafAfter time.Duration
	// NewClient builds the ComfyUI client of an instance; default comfy.New.
	NewClient func(in instance.Instance, clientID string) *comfy.Client
	Settings  Settings
	// Metrics receives claims, run ends and requeues; nil means none.
	Metrics Metrics
	// Reroute is asked when an instance refuses a task's prompt at
	// validation: true sends the task back to the queue for another
	// instance (capability.go); nil, or false, fails it as ComfyUI said.
	Reroute func(ctx context.Context, t *task.Task, instanceID string) bool
	// OnConnect is told, on the socket's read loop, each time an
	// instance's WebSocket connects (again): the instance may have
	// restarted with other models or nodes. It must not block; nil: nothing.
	OnConnect func(instanceID string)
	// OnRunEnd is told, on the run's goroutine (or, for a run whose
	// outputs are collected, on the collection's once the task finished),
	// how each run ended on its instance (outcome.go); nil: nothing.
	OnRunEnd func(ctx context.Context, instanceID string, end RunEnd)
}

// Dispatcher is the scheduler of one replica.
type Dispatcher struct {
	opts Options
	log  *slog.Logger
	wake chan struct{}

	// files follows whether the file store takes writes.
	files *filesHealth
	// queue remembers an empty queue between task_queued events.
	queue queueMemory
	// submitted notes (task id → time.Time) the tasks InsertTask claimed
	// at their insert, or is inserting: their task_queued wakes no
	// scheduling pass (InsertTask wakes it if the task is left pending).
	// The event takes the note; submittedSwept is when notes whose event
	// never came were last dropped (UnixNano).
	submitted      sync.Map
	submittedSwept atomic.Int64

	// mu guards settings and drivers.
	mu       sync.Mutex
	settings Settings
	drivers  map[string]*driver

	// previews relays live previews of running tasks; run by Run.
	previews *previewRelay

	// draining: Drain was called; the replica claims no task and takes no
	// instance lease any more (drain.go).
	draining atomic.Bool
	// settled is signalled whenever a run or an output collection ends, so
	// Drain learns when this replica has nothing left under way.
	settled chan struct{}

	// cancelMu guards earlyCancels: cancel requests for tasks no driver had
	// yet (claimed a moment before their run started).
	cancelMu     sync.Mutex
	earlyCancels map[string]time.Time
}

// earlyCancelTTL is how long an unclaimed cancel request is remembered.
const earlyCancelTTL = time.Minute

// noteEarlyCancel remembers a cancel request no driver could act on yet.
func (d *Dispatcher) noteEarlyCancel(taskID string) {
	d.cancelMu.Lock()
	defer d.cancelMu.Unlock()
	now := time.Now()
	for id, at := range d.earlyCancels {
		if now.Sub(at) > earlyCancelTTL {
			delete(d.earlyCancels, id)
		}
	}
	d.earlyCancels[taskID] = now
}

// takeEarlyCancel reports (once) whether a cancel for taskID came early.
func (d *Dispatcher) takeEarlyCancel(taskID string) bool {
	d.cancelMu.Lock()
	defer d.cancelMu.Unlock()
	_, ok := d.earlyCancels[taskID]
	delete(d.earlyCancels, taskID)
	return ok
}

// New returns a dispatcher; call Run to start it.
func New(opts Options) *Dispatcher {
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 15 * time.Second
	}
	if opts.DeafAfter == 0 {
		opts.DeafAfter = 5 * time.Second
	}
	if opts.NewClient == nil {
		opts.NewClient = func(in instance.Instance, id string) *comfy.Client { return comfy.New(in.BaseURL(), id, nil) }
	}
	if opts.Metrics == nil {
		opts.Metrics = noMetrics{}
	}
	d := &Dispatcher{
		opts: opts, log: opts.Log, settings: opts.Settings,
		wake: make(chan struct{}, 1), settled: make(chan struct{}, 1),
		drivers: map[string]*driver{}, earlyCancels: map[string]time.Time{},
		previews: newPreviewRelay(opts.Store, opts.Log),
	}
	d.files = newFilesHealth(opts.Blob, opts.Log, d.Wake)
	return d
}

// FilesWritable reports whether the file store takes writes (as far as
// this replica's last output copy or probe found), and if not, why. While
// it does not, this replica claims no new task.
func (d *Dispatcher) FilesWritable() (bool, string) { return d.files.Writable() }

// SetSettings applies new settings to runs that start from now on.
func (d *Dispatcher) SetSettings(s Settings) {
	d.mu.Lock()
	d.settings = s
	d.mu.Unlock()
}

func (d *Dispatcher) current() Settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings
}

// Wake asks the scheduler to look for work now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run schedules until ctx ends. On return every driver has stopped; tasks
// still running on instances stay running in the store and are reattached
// by the next holder of the instance's lease.
func (d *Dispatcher) Run(ctx context.Context) error {
	sub, err := d.opts.Store.Subscribe(ctx)
	if err != nil {
		return err
	}
	defer sub.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.leaseLoop(gctx) })
	g.Go(func() error { return d.eventLoop(gctx, ctx, sub) })
	g.Go(func() error { return d.scheduleLoop(gctx) })
	g.Go(func() error { return d.files.run(gctx) })
	g.Go(func() error { d.previews.run(gctx); return nil })
	err = g.Wait()
	d.stopAll()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (d *Dispatcher) scheduleLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		}
		d.schedule(ctx)
	}
}

// schedule hands pending tasks to ready drivers until either runs out. The
// store picks each driver's task: what the instance can run, then fair
// share between owners, then the model the instance has loaded (warm
// placement). A driver for which nothing is runnable is passed over for
// the rest of the round: another instance may run what it cannot.
func (d *Dispatcher) schedule(ctx context.Context) {
	if d.draining.Load() {
		return // shutting down: the other replicas, or the next start, take the queue
	}
	if ok, _ := d.files.Writable(); !ok {
		return // woken again when the file store takes writes
	}
	var nothing map[*driver]bool // drivers the store found nothing for this round
	for ctx.Err() == nil && !d.draining.Load() {
		if d.queue.knownEmpty(time.Now()) {
			return
		}
		dr := d.nextReady(nothing)
		if dr == nil {
			return
		}
		mark := d.queue.mark()
		t, err := dr.claimStep(ctx, func() (*task.Task, error) {
			return d.opts.Store.TaskClaim(ctx, d.claimParams(dr))
		})
		if err != nil && t != nil {
			d.log.WarnContext(ctx, "claim: its events were not logged", "task_id", t.ID, "err", err)
			err = nil
		}
		if errors.Is(err, store.ErrNoneRunnable) {
			dr.release()
			if nothing == nil {
				nothing = map[*driver]bool{}
			}
			nothing[dr] = true
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			dr.release()
			d.queue.sawEmpty(mark, time.Now())
			return // nothing pending at all
		}
		if err != nil {
			d.log.WarnContext(ctx, "claim failed", "instance_id", dr.inst.ID, "err", err)
			// The claim may have been applied with its answer lost (the
			// store died mid-call): the task would then be running on this
			// instance with no run. Reconcile, as after a restart: it finds
			// such a task once the store answers and requeues it. Started
			// before the reservation ends, so no claim comes between.
			dr.startReconcile()
			dr.release()
			return
		}
		if dr.start(ctx, t, false) == nil {
			// The driver stopped between the reservation and the claim:
			// give the task back at once rather than leave it to the next
			// holder's reconcile.
			d.giveBack(ctx, t)
		}
	}
}

// giveBack requeues a task claimed for a driver that stopped meanwhile.
func (d *Dispatcher) giveBack(ctx context.Context, t *task.Task) {
	_, err := d.opts.Store.TaskRequeue(ctx, &store.TaskRequeueParams{
		ID: t.ID, RefundAttempt: true, LeaseOwner: d.opts.Replica, Now: time.Now(), LogEvents: true,
	})
	if err != nil {
		d.log.WarnContext(ctx, "give back a claimed task failed; the instance's next driver reconciles it", "task_id", t.ID, "err", err)
	}
}

// nextReady reserves a ready driver not in skip, the one idle the longest.
func (d *Dispatcher) nextReady(skip map[*driver]bool) *driver {
	d.mu.Lock()
	defer d.mu.Unlock()
	// An idle instance goes before one that would queue the task behind
	// its current run (prefetch); among equals, the one idle the longest.
	var best *driver
	var bestRuns int
	for _, dr := range d.drivers {
		if skip[dr] || !dr.ready(d.settings.Prefetch) {
			continue
		}
		n := dr.load()
		if best == nil || n < bestRuns || (n == bestRuns && dr.idleSince().Before(best.idleSince())) {
			best, bestRuns = dr, n
		}
	}
	if best != nil && !best.reserve() {
		return nil
	}
	return best
}

// eventLoop reacts to events from every replica. subCtx is the context
// sub was opened with: when it ends, sub closes, possibly before ctx (its
// child) is seen to end.
func (d *Dispatcher) eventLoop(ctx, subCtx context.Context, sub store.Subscription) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C():
			if !ok {
				if subCtx.Err() != nil {
					return nil // the subscription ends with subCtx
				}
				return errors.New("dispatch: event subscription closed")
			}
			d.onEvent(ctx, ev)
		}
	}
}

func (d *Dispatcher) onEvent(ctx context.Context, ev event.Event) {
	switch ev.Type {
	case event.TypeTaskQueued:
		if _, ok := d.submitted.LoadAndDelete(ev.TaskID); ok {
			return
		}
		d.queue.onQueued()
		d.Wake()
	case event.TypeInstanceStatus:
		if dr := d.driver(instanceIDOf(ev)); dr != nil {
			dr.onInstanceStatus(ctx, ev)
		}
		d.Wake()
	case event.TypeCatalogChanged:
		d.opts.Fleet.CatalogChanged()
	case event.TypeTaskCancelRequested:
		if dr := d.driver(instanceIDOf(ev)); dr != nil && dr.cancel(ev.TaskID) {
			return
		}
		d.noteEarlyCancel(ev.TaskID)
	}
}

func (d *Dispatcher) driver(id string) *driver {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drivers[id]
}

// Drivers returns how many instances this replica drives.
func (d *Dispatcher) Drivers() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.drivers)
}
