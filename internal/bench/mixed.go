package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// The mixed fleet: half the instances offer SDXL and SD 1.5, the others SD
// 1.5 only; half the tasks need SDXL, drawn with mixedSeed.
const (
	mixedSteps = 10
	mixedSeed  = 20240603
	mixedXL    = "sd_xl_base_1.0.safetensors"
	mixedSD15  = "v1-5-pruned-emaonly.safetensors"
)

// runMixed runs the same tasks on a fleet of two catalogues twice: with
// placement by capability (the gateway reads every instance's
// /object_info), and capability-blind, as a gateway that knows no
// catalogue: a task sent to an instance without its model fails there and
// its client submits it again.
func runMixed(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	rng := rand.New(rand.NewPCG(mixedSeed, mixedSeed))
	pick := make([]string, s.MixedTasks)
	for i := range pick {
		pick[i] = mixedSD15
		if rng.IntN(2) == 0 {
			pick[i] = mixedXL
		}
	}
	runs := map[string]mixedResult{}
	for _, mode := range []string{"capability", "blind"} {
		r, err := mixedRun(ctx, e, mode == "blind", pick)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		runs[mode] = r
	}
	t := &Table{
		Title: fmt.Sprintf("mixed: %s tasks, half of them SDXL, on %d instances of which %d have SDXL, task %s",
			itoa(s.MixedTasks), s.MixedInstances, mixedLarge(s.MixedInstances), fmtDur(mixedSteps*s.MixedStep)),
		Header: []string{"placement", "tasks", "failed runs", "runs", "makespan", "makespan vs blind"},
	}
	for _, mode := range []string{"capability", "blind"} {
		r := runs[mode]
		name := "by capability"
		if mode == "blind" {
			name = "capability-blind, failed tasks submitted again"
		}
		t.add(name, itoa(s.MixedTasks), itoa(r.failed), itoa(r.runs), fmtDur(r.makespan),
			fmtRatio(r.makespan.Seconds()/runs["blind"].makespan.Seconds()))
	}
	t.note("each task's checkpoint is drawn with seed %d; the same tasks in the same order for both runs; every task is submitted at once", mixedSeed)
	t.note("by capability: the gateway reads each instance's /object_info and places an SDXL task only on an instance that has SDXL")
	t.note("capability-blind: every /object_info answers 500, so the gateway knows no catalogue and validates at dispatch, and scheduler.maxAttempts is 1; a task that fails (an SDXL task on an SD 1.5 instance) is submitted again by its client when task_failed arrives, until it completes")
	t.note("runs are the prompts the instances received, refused ones included; makespan runs from the first submit to the last task_completed on /ws")
	t.note("target: no failed run by capability")
	return t, nil
}

// mixedLarge is how many of n mixed instances have SDXL.
func mixedLarge(n int) int { return max(n/2, 1) }

// mixedResult is one mixed run's outcome.
type mixedResult struct {
	failed, runs int
	makespan     time.Duration
}

func mixedRun(ctx context.Context, e *env, blind bool, pick []string) (mixedResult, error) {
	s := e.sizes
	large, err := startSims(mixedLarge(s.MixedInstances), comfysim.Options{StepDelay: s.MixedStep, Checkpoints: []string{mixedXL, mixedSD15}})
	if err != nil {
		return mixedResult{}, err
	}
	defer large.close()
	small, err := startSims(s.MixedInstances-mixedLarge(s.MixedInstances), comfysim.Options{StepDelay: s.MixedStep, Checkpoints: []string{mixedSD15}})
	if err != nil {
		return mixedResult{}, err
	}
	defer small.close()
	spec := gatewaySpec{label: "mixed-capability", ports: append(large.ports(), small.ports()...), health: time.Second}
	if blind {
		spec.label, spec.scheduler = "mixed-blind", map[string]string{"maxAttempts": "1"}
		for _, sim := range append(large.list, small.list...) {
			sim.InjectHTTPFault(comfysim.HTTPFault{Route: "/object_info", Times: 1 << 30})
		}
	}
	g, err := e.startGateway(ctx, spec)
	if err != nil {
		return mixedResult{}, err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, s.MixedInstances, time.Minute); err != nil {
		return mixedResult{}, err
	}
	if !blind {
		if err := waitCatalogs(ctx, g.admin, s.MixedInstances); err != nil {
			return mixedResult{}, err
		}
	}
	n := len(pick)
	body := func(i int) []byte { return samplerTask(i, mixedSteps, pick[i]) }
	f := newFollower(n)
	st, err := g.admin.dialEvents(ctx, f.on)
	if err != nil {
		return mixedResult{}, err
	}
	defer st.close()
	// The clients that submit failed tasks again: a goroutine this run owns.
	var wg sync.WaitGroup
	resubmitErr := make(chan error, 1)
	wg.Go(func() {
		for i := range f.again {
			id, err := g.admin.submit(ctx, body(i))
			if err != nil {
				resubmitErr <- fmt.Errorf("submit task %d again: %w", i, err)
				return
			}
			f.submitted(i, id)
		}
	})
	defer func() {
		f.stop()
		wg.Wait()
	}()
	start := time.Now()
	sub := submitter{clients: s.Clients, body: body, as: func(int) *api { return g.admin }, onSubmit: f.submitted}
	if err := sub.run(ctx, n); err != nil {
		return mixedResult{}, err
	}
	select {
	case <-f.done:
	case err := <-resubmitErr:
		return mixedResult{}, err
	case <-st.done:
		return mixedResult{}, errStreamEnded
	case <-ctx.Done():
		return mixedResult{}, ctx.Err()
	case <-time.After(10 * time.Minute):
		return mixedResult{}, fmt.Errorf("waited 10m for %d tasks to complete", n)
	}
	failed, last := f.result()
	r := mixedResult{failed: failed, runs: large.log.Total() + small.log.Total() + refused(large, small), makespan: last.Sub(start)}
	e.logf("%s: %s tasks in %s, %d failed runs", spec.label, itoa(n), fmtDur(r.makespan), r.failed)
	return r, nil
}

// refused counts the prompts the instances refused at validation (they are
// in no execution log).
func refused(fleets ...*sims) int {
	n := 0
	for _, f := range fleets {
		for _, sim := range f.list {
			for _, p := range sim.Prompts() {
				if p.Status == 400 {
					n++
				}
			}
		}
	}
	return n
}

// waitCatalogs waits until the gateway has read every instance's catalogue.
func waitCatalogs(ctx context.Context, a *api, n int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var list []struct {
			Catalog *struct{} `json:"catalog"`
		}
		if err := a.do(ctx, "GET", "/api/instances", nil, &list); err != nil {
			return err
		}
		known := 0
		for _, in := range list {
			if in.Catalog != nil {
				known++
			}
		}
		if known == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d catalogues read after a minute", known, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// follower follows the outcomes of n logical tasks over /ws: a failed one
// is handed to again (submitted anew), a completed one counts once.
type follower struct {
	again chan int
	done  chan struct{}

	// mu guards the fields below.
	mu      sync.Mutex
	want    int
	byID    map[string]int    // task id -> logical task
	early   map[string]string // outcomes of ids not yet known: type
	ok      map[int]bool
	failed  int
	last    time.Time
	stopped bool
}

func newFollower(n int) *follower {
	return &follower{again: make(chan int, n), done: make(chan struct{}), want: n,
		byID: map[string]int{}, early: map[string]string{}, ok: map[int]bool{}}
}

// on is the stream handler.
func (f *follower) on(m *message, at time.Time) {
	if m.Type != "task_completed" && m.Type != "task_failed" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.byID[m.Data.TaskID]
	if !ok {
		f.early[m.Data.TaskID] = m.Type
		return
	}
	f.outcome(i, m.Type, at)
}

// submitted records task i's id (a first submit or a new one).
func (f *follower) submitted(i int, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID[id] = i
	if typ, ok := f.early[id]; ok {
		delete(f.early, id)
		f.outcome(i, typ, time.Now())
	}
}

// outcome applies one outcome of logical task i. Caller holds mu.
func (f *follower) outcome(i int, typ string, at time.Time) {
	if typ == "task_failed" {
		f.failed++
		if !f.stopped {
			f.again <- i // never blocks: at most one outcome pending per logical task
		}
		return
	}
	if f.ok[i] {
		return
	}
	f.ok[i] = true
	f.last = at
	if len(f.ok) == f.want {
		close(f.done)
	}
}

// stop ends the resubmissions.
func (f *follower) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.stopped = true
		close(f.again)
	}
}

func (f *follower) result() (failed int, last time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed, f.last
}
