// Package eta estimates when a pending task starts and finishes. It learns
// how long runs take from the runs the gateway sees end (Durations: moving
// averages per workflow shape and instance, in memory), and walks the head
// of the queue over the instances that can take work (Plan), so an
// estimate costs a few store reads bounded by HeadLimit, whatever the
// queue's length. docs/architecture.md says what it does not account for.
package eta

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// HeadLimit is how many tasks at the head of the queue an estimate walks
// one by one; the tasks past them count by their number alone (Plan.Skip).
const HeadLimit = 500

// Source is what the estimator reads from the store.
type Source interface {
	TaskQueuePositions(ctx context.Context, ids []string) (map[string]int, error)
	TaskQueueHead(ctx context.Context, p *store.TaskQueueHeadParams) ([]store.QueuedTask, error)
	TaskListRunning(ctx context.Context, p *store.TaskListRunningParams) ([]*task.Task, error)
	CapGet(ctx context.Context, key string) (*store.Cap, error)
	InstanceList(ctx context.Context) ([]instance.State, error)
}

// Estimate is a pending task's place in the queue and when it is expected
// to start and finish.
type Estimate struct {
	Position      int
	Start, Finish time.Time
}

// Estimator answers estimates for pending tasks. It is safe for concurrent
// use.
type Estimator struct {
	src Source
	// configured lists the ids of the configured instances.
	configured func() []string
	durations  *Durations
	// headLimit is HeadLimit (tests lower it).
	headLimit int

	// mu guards shapes: the shape of each placement requirement seen (a
	// requirement never changes, so neither does its shape).
	mu     sync.Mutex
	shapes map[string]string
}

// New returns an estimator that reads src and the configured instances.
func New(src Source, configured func() []string) *Estimator {
	return &Estimator{src: src, configured: configured, durations: NewDurations(), shapes: map[string]string{}, headLimit: HeadLimit}
}

// Durations are the averages the estimator learned.
func (e *Estimator) Durations() *Durations { return e.durations }

// Observe records that t ran for ran on instance (from ComfyUI starting its
// prompt to ComfyUI being done with it).
func (e *Estimator) Observe(ctx context.Context, instanceID string, t *task.Task, ran time.Duration) error {
	shape, err := e.shapeOf(ctx, t.CapKey, t.Workflow)
	if err != nil {
		return err
	}
	e.durations.Observe(shape, instanceID, ran)
	return nil
}

// shapeOf is the shape of a task with requirement capKey and workflow wf
// (used when it has no requirement); "" when neither tells.
func (e *Estimator) shapeOf(ctx context.Context, capKey string, wf []byte) (string, error) {
	if capKey == "" {
		if len(wf) == 0 {
			return "", nil
		}
		return ShapeOfWorkflow(wf)
	}
	e.mu.Lock()
	s, ok := e.shapes[capKey]
	e.mu.Unlock()
	if ok {
		return s, nil
	}
	c, err := e.src.CapGet(ctx, capKey)
	if err != nil {
		return "", fmt.Errorf("eta: requirement %s: %w", capKey, err)
	}
	if s, err = ShapeOfRequirement(c.Data); err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.shapes) >= maxKeys {
		clear(e.shapes)
	}
	e.shapes[capKey] = s
	return s, nil
}

// target is a task to estimate and its place in the queue.
type target struct {
	t   *task.Task
	pos int
}

// Estimate estimates the pending tasks among tasks, by id. A task is left
// out when it cannot be estimated: no run of its shape was seen yet, no
// instance that can run it is up, or it is no longer pending.
func (e *Estimator) Estimate(ctx context.Context, now time.Time, tasks []*task.Task) (map[string]Estimate, error) {
	if _, seen := e.durations.Typical(); !seen {
		return nil, nil // nothing learned yet: no store read
	}
	targets, err := e.targets(ctx, tasks)
	if err != nil || len(targets) == 0 {
		return nil, err
	}
	w := walk{e: e, caps: map[string]Job{}}
	plan, err := w.start(ctx, now)
	if err != nil || plan == nil {
		return nil, err
	}
	head, err := e.src.TaskQueueHead(ctx, &store.TaskQueueHeadParams{Limit: min(targets[len(targets)-1].pos, e.headLimit)})
	if err != nil {
		return nil, fmt.Errorf("eta: %w", err)
	}
	return w.run(ctx, plan, head, targets)
}

// targets are the pending tasks among tasks with their positions, in
// queue order.
func (e *Estimator) targets(ctx context.Context, tasks []*task.Task) ([]target, error) {
	var ids []string
	for _, t := range tasks {
		if t.Status == task.StatusPending {
			ids = append(ids, t.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	positions, err := e.src.TaskQueuePositions(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("eta: %w", err)
	}
	var out []target
	for _, t := range tasks {
		if pos, ok := positions[t.ID]; ok {
			out = append(out, target{t: t, pos: pos}) // the others were claimed or cancelled meanwhile
		}
	}
	slices.SortFunc(out, func(a, b target) int { return a.pos - b.pos })
	return out, nil
}

// walk is one estimate's pass over the queue; caps caches the jobs of the
// requirements met on the way.
type walk struct {
	e    *Estimator
	caps map[string]Job
}

// start is the plan on the ready instances with their running work; nil
// when nothing was observed yet.
func (w *walk) start(ctx context.Context, now time.Time) (*Plan, error) {
	states, err := w.e.src.InstanceList(ctx)
	if err != nil {
		return nil, fmt.Errorf("eta: %w", err)
	}
	up := map[string]bool{}
	for _, st := range states {
		up[st.ID] = st.Enabled && st.Alive
	}
	var ready []string
	for _, id := range w.e.configured() {
		if up[id] {
			ready = append(ready, id)
		}
	}
	tasks, err := w.e.src.TaskListRunning(ctx, &store.TaskListRunningParams{})
	if err != nil {
		return nil, fmt.Errorf("eta: %w", err)
	}
	var running []Running
	for _, t := range tasks {
		if !up[t.InstanceID] {
			continue
		}
		shape, err := w.e.shapeOf(ctx, t.CapKey, t.Workflow)
		if err != nil {
			return nil, err
		}
		running = append(running, Running{Instance: t.InstanceID, Shape: shape, Started: t.StartedAt})
	}
	plan, _ := NewPlan(now, w.e.durations, ready, running)
	return plan, nil
}

// job is a queued task with requirement capKey as the plan places it.
func (w *walk) job(ctx context.Context, capKey string, wf []byte) (Job, error) {
	if capKey == "" {
		shape, err := w.e.shapeOf(ctx, "", wf)
		return Job{Shape: shape, Any: true}, err
	}
	if j, ok := w.caps[capKey]; ok {
		return j, nil
	}
	c, err := w.e.src.CapGet(ctx, capKey)
	if err != nil {
		return Job{}, fmt.Errorf("eta: requirement %s: %w", capKey, err)
	}
	shape, err := w.e.shapeOf(ctx, capKey, nil)
	if err != nil {
		return Job{}, err
	}
	j := Job{Shape: shape, Instances: c.Instances}
	w.caps[capKey] = j
	return j, nil
}

// run places the listed head in order, then the targets past it, and
// returns the slots of the targets.
func (w *walk) run(ctx context.Context, plan *Plan, head []store.QueuedTask, targets []target) (map[string]Estimate, error) {
	byID := make(map[string]target, len(targets))
	for _, tg := range targets {
		byID[tg.t.ID] = tg
	}
	out := map[string]Estimate{}
	keep := func(tg target, s Slot, ok bool) {
		if ok {
			out[tg.t.ID] = Estimate{Position: tg.pos, Start: s.Start, Finish: s.Finish}
		}
	}
	for _, q := range head {
		tg, isTarget := byID[q.ID]
		var wf []byte
		if isTarget {
			wf = tg.t.Workflow
			delete(byID, q.ID)
		}
		j, err := w.job(ctx, q.CapKey, wf)
		if err != nil {
			return nil, err
		}
		s, ok := plan.Place(j)
		if isTarget {
			keep(tg, s, ok)
		}
	}
	// Past the head: the tasks between two targets count by their number.
	placed := len(head)
	for _, tg := range targets {
		if _, left := byID[tg.t.ID]; !left || tg.pos <= placed {
			continue // estimated above, or left the queue meanwhile
		}
		plan.Skip(tg.pos - 1 - placed)
		j, err := w.job(ctx, tg.t.CapKey, tg.t.Workflow)
		if err != nil {
			return nil, err
		}
		s, ok := plan.Place(j)
		keep(tg, s, ok)
		placed = tg.pos
	}
	return out, nil
}
