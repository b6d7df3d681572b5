// Package fleet keeps the set of configured ComfyUI instances, their run
// time state and their node catalogues (what each can run), and publishes
// an instance_status event on every change of alive, busy or enabled. The
// health checker, the dispatcher and the API all read and change instances
// through it.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Fleet is the registry of configured instances over the store's state.
type Fleet struct {
	store store.Store
	log   *slog.Logger

	// mu guards instances, order and watchers.
	mu        sync.RWMutex
	instances map[string]instance.Instance
	order     []string
	watchers  map[chan struct{}]struct{}

	// cat caches the instances' node catalogues (catalog.go).
	cat catalogs
	// syncMu serialises SyncCaps.
	syncMu sync.Mutex
	// cleanMu guards cleanRuns: the instances whose run failures this
	// replica knows to be zero (drain.go).
	cleanMu   sync.Mutex
	cleanRuns map[string]bool
}

// New returns an empty fleet; call Set with the configured instances.
func New(st store.Store, log *slog.Logger) *Fleet {
	return &Fleet{
		store:     st,
		log:       log,
		instances: map[string]instance.Instance{},
		watchers:  map[chan struct{}]struct{}{},
	}
}

// Set replaces the configured instances. New ones get a state record
// (enabled unless an earlier run disabled them); removed ones are forgotten.
// Watchers are told when membership changed.
func (f *Fleet) Set(ctx context.Context, list []instance.Instance) (added, removed []string, err error) {
	next := make(map[string]instance.Instance, len(list))
	order := make([]string, 0, len(list))
	for _, in := range list {
		next[in.ID] = in
		order = append(order, in.ID)
	}
	f.mu.Lock()
	var resync []string // added, or with other labels: what they can run changed
	for id, in := range next {
		old, ok := f.instances[id]
		if !ok {
			added = append(added, id)
		}
		if !ok || !maps.Equal(old.Labels, in.Labels) {
			resync = append(resync, id)
		}
	}
	for id := range f.instances {
		if _, ok := next[id]; !ok {
			removed = append(removed, id)
		}
	}
	f.instances, f.order = next, order
	f.mu.Unlock()

	for _, id := range added {
		if _, err := f.store.InstanceUpdate(ctx, &store.InstanceUpdateParams{ID: id}); err != nil {
			return added, removed, fmt.Errorf("fleet: create state of %s: %w", id, err)
		}
	}
	for _, id := range removed {
		if err := f.store.InstanceDelete(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return added, removed, fmt.Errorf("fleet: delete state of %s: %w", id, err)
		}
	}
	if len(added)+len(removed) > 0 {
		f.notify()
	}
	slices.Sort(resync)
	if err := f.SyncCaps(ctx, resync); err != nil {
		return added, removed, err
	}
	return added, removed, nil
}

// Instances returns the configured instances in config order.
func (f *Fleet) Instances() []instance.Instance {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]instance.Instance, 0, len(f.order))
	for _, id := range f.order {
		out = append(out, f.instances[id])
	}
	return out
}

// Lookup returns a configured instance by id.
func (f *Fleet) Lookup(id string) (instance.Instance, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	in, ok := f.instances[id]
	return in, ok
}

// Watch returns a channel that receives a signal (coalesced) whenever the
// set of instances changes, and a function that stops the watch.
func (f *Fleet) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.watchers[ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.watchers, ch)
		f.mu.Unlock()
	}
}

func (f *Fleet) notify() {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for ch := range f.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Update changes an instance's state and publishes instance_status when
// alive, enabled or the stored busy flag changed. The stored Busy means
// "ComfyUI's own queue holds someone else's prompts" (set by the
// dispatcher when that changes); a gateway run's busy state and current task
// are derived from the running tasks, never written per run (see Views).
func (f *Fleet) Update(ctx context.Context, p *store.InstanceUpdateParams) (instance.State, error) {
	old, err := f.store.InstanceGet(ctx, p.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return instance.State{}, fmt.Errorf("fleet: get %s: %w", p.ID, err)
	}
	st, err := f.store.InstanceUpdate(ctx, p)
	if err != nil {
		return st, fmt.Errorf("fleet: update %s: %w", p.ID, err)
	}
	if st.Alive != old.Alive || st.Busy != old.Busy || st.Enabled != old.Enabled {
		f.publish(ctx, st)
	}
	return st, nil
}

// PublishRun announces that a gateway run started (taskID set, owner the
// task's owner) or ended (taskID "") on an instance, without a store
// write: busy and the current task of a view come from the running tasks.
// st is the instance's state as the caller knows it; also are events
// published with it, in the same step of the store.
func (f *Fleet) PublishRun(ctx context.Context, st instance.State, taskID, owner string, also ...event.Event) {
	st.CurrentTaskID = taskID
	st.Busy = st.Busy || taskID != ""
	f.send(ctx, st, owner, also...)
}

// publish sends st as instance_status, looking up the owner of its
// current task, if any.
func (f *Fleet) publish(ctx context.Context, st instance.State) {
	owner := ""
	if st.CurrentTaskID != "" {
		// Unknown, the id goes to admins only.
		if t, err := f.store.TaskGet(ctx, st.CurrentTaskID); err == nil {
			owner = t.Owner
		}
	}
	f.send(ctx, st, owner)
}

// send publishes st as instance_status. The event's Owner is the owner of
// the current task, so the push hub shows its id to that user (and admins)
// only.
func (f *Fleet) send(ctx context.Context, st instance.State, owner string, also ...event.Event) {
	if err := f.store.Publish(ctx, append([]event.Event{event.Instance(st, owner)}, also...)...); err != nil {
		f.log.WarnContext(ctx, "publish instance status failed", "instance_id", st.ID, "err", err)
	}
}

// View is an instance as the API shows it: config facts and run time state.
type View struct {
	ID             string      `json:"id"`
	ServerID       string      `json:"serverId"`
	ServerName     string      `json:"serverName"`
	IP             string      `json:"ip"`
	Port           int         `json:"port"`
	Enabled        bool        `json:"enabled"`
	Alive          bool        `json:"alive"`
	Busy           bool        `json:"busy"`
	LastHeartbeat  *string     `json:"lastHeartbeat"`
	CurrentTaskID  string      `json:"currentTaskId"`
	LastError      string      `json:"lastError"`
	QueueRemaining int         `json:"queueRemaining"`
	Device         *DeviceView `json:"device,omitempty"`
	// Labels are the server's labels from the config; {} for none.
	Labels map[string]string `json:"labels"`
	// Catalog summarises the instance's node catalogue; null until read.
	Catalog *catalog.Summary `json:"catalog"`
	// RunFailures counts the runs failed in a row for the instance's own
	// reasons; healthCheck.drainAfterFailures of them disable it.
	RunFailures int `json:"runFailures"`
	// DrainReason, DrainedAt and AutoDrained say why and since when the
	// gateway disabled it; a passing probe after healthCheck.drainCooldown
	// enables it again, and so does an operator.
	DrainReason string  `json:"drainReason,omitempty"`
	DrainedAt   *string `json:"drainedAt,omitempty"`
	AutoDrained bool    `json:"autoDrained"`
	// CurrentTaskOwner owns the current task; not shown, it decides who may
	// see CurrentTaskID (ForViewer).
	CurrentTaskOwner string `json:"-"`
}

// ForViewer is v as username sees it: CurrentTaskID is blank unless the
// viewer is an admin or owns the task. Users see which instances are busy,
// not whose tasks run there.
func (v View) ForViewer(username string, admin bool) View {
	if !admin && (username == "" || v.CurrentTaskOwner != username) {
		v.CurrentTaskID = ""
	}
	return v
}

// DeviceView is the device facts from /system_stats.
type DeviceView struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	VRAMTotal      int64  `json:"vramTotal"`
	VRAMFree       int64  `json:"vramFree"`
	ComfyUIVersion string `json:"comfyuiVersion,omitempty"`
}

// Views returns every configured instance with its state, in config order.
func (f *Fleet) Views(ctx context.Context) ([]View, error) {
	states, err := f.store.InstanceList(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: list states: %w", err)
	}
	current, err := f.currentTasks(ctx, "")
	if err != nil {
		return nil, err
	}
	byID := make(map[string]instance.State, len(states))
	for _, st := range states {
		byID[st.ID] = withRun(st, current[st.ID].ID)
	}
	list := f.Instances()
	out := make([]View, 0, len(list))
	for _, in := range list {
		st, ok := byID[in.ID]
		if !ok {
			st = instance.State{ID: in.ID, Enabled: true}
		}
		v := MakeView(in, st)
		v.Catalog = f.summary(ctx, st.CatalogHash)
		v.CurrentTaskOwner = current[in.ID].Owner
		out = append(out, v)
	}
	return out, nil
}

// View returns one configured instance with its state; store.ErrNotFound
// for an id that is not configured.
func (f *Fleet) View(ctx context.Context, id string) (View, error) {
	in, ok := f.Lookup(id)
	if !ok {
		return View{}, store.ErrNotFound
	}
	st, err := f.store.InstanceGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		st, err = instance.State{ID: id, Enabled: true}, nil
	}
	if err != nil {
		return View{}, fmt.Errorf("fleet: get %s: %w", id, err)
	}
	current, err := f.currentTasks(ctx, id)
	if err != nil {
		return View{}, err
	}
	v := MakeView(in, withRun(st, current[id].ID))
	v.CurrentTaskOwner = current[id].Owner
	v.Catalog = f.summary(ctx, st.CatalogHash)
	return v, nil
}

// runningTask is the gateway task running on an instance.
type runningTask struct{ ID, Owner string }

// currentTasks maps instance id to the gateway task running there.
func (f *Fleet) currentTasks(ctx context.Context, instanceID string) (map[string]runningTask, error) {
	running, err := f.store.TaskListRunning(ctx, &store.TaskListRunningParams{InstanceID: instanceID})
	if err != nil {
		return nil, fmt.Errorf("fleet: list running tasks: %w", err)
	}
	out := make(map[string]runningTask, len(running))
	for _, t := range running {
		out[t.InstanceID] = runningTask{ID: t.ID, Owner: t.Owner}
	}
	return out, nil
}

// withRun fills the derived fields: the current task, and busy when a
// gateway task runs there or ComfyUI's queue holds others' prompts.
func withRun(st instance.State, taskID string) instance.State {
	st.CurrentTaskID = taskID
	st.Busy = st.Busy || taskID != ""
	return st
}

// MakeView merges config facts and state; the catalogue summary is the
// fleet's to add (Views, View).
func MakeView(in instance.Instance, st instance.State) View {
	v := View{
		ID: in.ID, ServerID: in.ServerID, ServerName: in.ServerName, IP: in.IP, Port: in.Port,
		Enabled: st.Enabled, Alive: st.Alive, Busy: st.Busy,
		CurrentTaskID: st.CurrentTaskID, LastError: st.LastError, QueueRemaining: st.QueueRemaining,
		Labels: maps.Clone(in.Labels), RunFailures: st.RunFailures, DrainReason: st.DrainReason,
		AutoDrained: st.AutoDrained,
	}
	if !st.DrainedAt.IsZero() {
		s := st.DrainedAt.UTC().Format("2006-01-02T15:04:05.000Z")
		v.DrainedAt = &s
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if !st.LastHeartbeat.IsZero() {
		s := st.LastHeartbeat.UTC().Format("2006-01-02T15:04:05.000Z")
		v.LastHeartbeat = &s
	}
	if st.Device != (instance.Device{}) {
		d := DeviceView(st.Device)
		v.Device = &d
	}
	return v
}

// Available returns the ids of instances that may take a task now: enabled,
// alive, not busy. The order is config order.
func (f *Fleet) Available(ctx context.Context) ([]string, error) {
	views, err := f.Views(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(views))
	for _, v := range views {
		if v.Enabled && v.Alive && !v.Busy {
			ids = append(ids, v.ID)
		}
	}
	return slices.Clip(ids), nil
}

// Get returns an instance's state; a configured instance with no record yet
// reads as enabled and not alive.
func (f *Fleet) Get(ctx context.Context, id string) (instance.State, error) {
	st, err := f.store.InstanceGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return instance.State{ID: id, Enabled: true}, nil
	}
	return st, err
}
