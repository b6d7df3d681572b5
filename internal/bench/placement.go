package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// Placement tasks run placementSteps sampler steps of ModelLoad/50 each, so
// a task computes for a fifth of a model load.
const (
	placementSteps = 10
	placementSeed  = 20240602
)

// runPlacement runs the same tasks over several checkpoints twice, with
// scheduler.placement warm and fifo, on instances that pay a delay to load
// a checkpoint other than their last one.
func runPlacement(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	ckpts := make([]string, s.PlacementCheckpoints)
	for i := range ckpts {
		ckpts[i] = fmt.Sprintf("bench-model-%d.safetensors", i+1)
	}
	rng := rand.New(rand.NewPCG(placementSeed, placementSeed))
	pick := make([]string, s.PlacementTasks)
	for i := range pick {
		pick[i] = ckpts[rng.IntN(len(ckpts))]
	}
	runs := map[string]placed{}
	for _, policy := range []string{"warm", "fifo"} {
		p, err := placementRun(ctx, e, policy, ckpts, pick)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", policy, err)
		}
		runs[policy] = p
	}
	step := s.ModelLoad / 50
	t := &Table{
		Title: fmt.Sprintf("placement: %s tasks over %d checkpoints on %d instances, model load %s, task %s",
			itoa(s.PlacementTasks), len(ckpts), s.PlacementInstances, fmtDur(s.ModelLoad), fmtDur(placementSteps*step)),
		Header: []string{"scheduler.placement", "model loads", "loads per task", "makespan", "makespan vs fifo"},
	}
	for _, policy := range []string{"warm", "fifo"} {
		p := runs[policy]
		t.add(policy, itoa(p.loads), fmt.Sprintf("%.2f", float64(p.loads)/float64(s.PlacementTasks)), fmtDur(p.makespan),
			fmtRatio(p.makespan.Seconds()/runs["fifo"].makespan.Seconds()))
	}
	t.note("each task's checkpoint is drawn uniformly (seed %d); the same tasks in the same order for both runs; every task is submitted at once", placementSeed)
	t.note("scheduler.warmWindow is its default (30000 ms); model loads are the simulators' own count (ModelLoads); makespan runs from the first submit to the last task_completed on /ws")
	t.note("no target was set for this scenario")
	return t, nil
}

// placed is one placement run's outcome.
type placed struct {
	loads    int
	makespan time.Duration
}

func placementRun(ctx context.Context, e *env, policy string, ckpts, pick []string) (placed, error) {
	s := e.sizes
	opts := comfysim.Options{StepDelay: s.ModelLoad / 50, ModelLoadDelay: s.ModelLoad, Checkpoints: ckpts}
	fleet, err := startSims(s.PlacementInstances, opts)
	if err != nil {
		return placed{}, err
	}
	defer fleet.close()
	g, err := e.startGateway(ctx, gatewaySpec{label: "placement-" + policy, ports: fleet.ports(),
		scheduler: map[string]string{"placement": policy}})
	if err != nil {
		return placed{}, err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, s.PlacementInstances, time.Minute); err != nil {
		return placed{}, err
	}
	n := len(pick)
	tr := newTracker(n, false)
	st, err := g.admin.dialEvents(ctx, tr.on)
	if err != nil {
		return placed{}, err
	}
	defer st.close()
	g.profile(ctx, "")
	start := time.Now()
	body := func(i int) []byte { return samplerTask(i, placementSteps, pick[i]) }
	sub := submitter{clients: s.Clients, body: body, as: func(int) *api { return g.admin }}
	if err := sub.run(ctx, n); err != nil {
		return placed{}, err
	}
	if err := waitOutcomes(ctx, g, tr, st, n); err != nil {
		return placed{}, err
	}
	_, _, last := tr.counts()
	if err := checkRuns(fleet.log, n); err != nil {
		return placed{}, err
	}
	e.logf("%s: %s in %s, %d model loads", policy, itoa(n), fmtDur(last.Sub(start)), fleet.modelLoads())
	return placed{loads: fleet.modelLoads(), makespan: last.Sub(start)}, nil
}
