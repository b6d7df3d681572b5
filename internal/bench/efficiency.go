package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// Target of the efficiency scenario: makespan within this share of the bound.
const efficiencyTarget = 0.97

// Heavy-tailed task lengths: log-normal sampler steps.
const (
	effMedianSteps = 10
	effSigma       = 1.0
	effSeed        = 20240601
)

// runEfficiency runs heavy-tailed tasks on a fleet twice: through the
// gateway's queue, and round-robin straight into the instances' own
// queues. It compares each makespan with the lower bound
// max(total work / instances, longest task).
func runEfficiency(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	steps := effSteps(s.EfficiencyTasks)
	t := &Table{
		Title:  fmt.Sprintf("efficiency: %s heavy-tailed tasks on %d instances", itoa(s.EfficiencyTasks), s.EfficiencyInstances),
		Header: []string{"placement", "work", "longest task", "bound", "makespan", "bound/makespan", "target", "result"},
	}
	gw, err := efficiencyGateway(ctx, e, steps)
	if err != nil {
		return nil, err
	}
	rr, err := efficiencyRoundRobin(ctx, e, steps)
	if err != nil {
		return nil, err
	}
	target := fmt.Sprintf("≥ %.2f", efficiencyTarget)
	gw.row(t, "gateway queue ("+e.opts.Store+")", target, verdict(gw.ratio() >= efficiencyTarget, fmtRatio(gw.ratio())))
	rr.row(t, "round-robin into ComfyUI queues", "baseline", "—")
	t.note("task lengths: log-normal sampler steps (median %d, sigma %.1f, seed %d, 1..10000) of %s each; the same tasks in the same order for both",
		effMedianSteps, effSigma, effSeed, fmtDur(s.EfficiencyStep))
	t.note("work and longest task are the runs' durations in the simulators' execution log of that run; bound = max(work / %d, longest task)", s.EfficiencyInstances)
	t.note("makespan: first submit to the last task_completed on /ws (gateway), to the last prompt's end in the log (round-robin)")
	t.note("gateway makespan is %.2f of round-robin's", gw.makespan.Seconds()/rr.makespan.Seconds())
	t.note("makespan = work / %d + idle per instance; gateway idle: %s", s.EfficiencyInstances, gw.idle)
	t.note("round-robin idle: %s", rr.idle)
	return t, nil
}

// effSteps draws the sampler steps of n tasks.
func effSteps(n int) []int {
	rng := rand.New(rand.NewPCG(effSeed, effSeed))
	out := make([]int, n)
	for i := range out {
		x := effMedianSteps * math.Exp(effSigma*rng.NormFloat64())
		out[i] = min(max(int(math.Round(x)), 1), 10000)
	}
	return out
}

// makespan is one placement's outcome.
type makespan struct {
	instances     int
	work, longest time.Duration
	makespan      time.Duration
	idle          idle
}

// idle splits the instances' idle time within a makespan, averaged per
// instance: before its first run, between runs, after its last run until
// the fleet's last run ended, and from then to the last result.
type idle struct {
	first, between, tail, lag time.Duration
	// submitting is the part of between that began while tasks were
	// still being submitted, in the first submit time of the makespan.
	submitting, submit time.Duration
}

func (i idle) String() string {
	return fmt.Sprintf("before the first task %s, between tasks %s (%s of it while the tasks were being submitted, the first %s), "+
		"after the last task (tail) %s, last result after the last run ended %s",
		fmtDur(i.first), fmtDur(i.between), fmtDur(i.submitting), fmtDur(i.submit), fmtDur(i.tail), fmtDur(i.lag))
}

// idleTimes computes idle from the log, with the makespan starting at start
// and ending at last (the last result); submitting ended at submitted.
func idleTimes(fleet *sims, start, submitted, last time.Time) idle {
	byInstance := runsByInstance(fleet.log)
	_, _, lastEnd, _ := work(fleet.log)
	var sum idle
	for _, runs := range byInstance {
		sum.first += runs[0].Start.Sub(start)
		for i := 1; i < len(runs); i++ {
			gap := runs[i].Start.Sub(runs[i-1].End)
			sum.between += gap
			if runs[i-1].End.Before(submitted) {
				sum.submitting += gap
			}
		}
		sum.tail += lastEnd.Sub(runs[len(runs)-1].End)
	}
	n := time.Duration(len(fleet.list))
	sum.first += time.Duration(len(fleet.list)-len(byInstance)) * last.Sub(start)
	return idle{first: sum.first / n, between: sum.between / n, tail: sum.tail / n, lag: last.Sub(lastEnd),
		submitting: sum.submitting / n, submit: submitted.Sub(start)}
}

func (m makespan) bound() time.Duration {
	return max(m.work/time.Duration(m.instances), m.longest)
}

func (m makespan) ratio() float64 { return m.bound().Seconds() / m.makespan.Seconds() }

func (m makespan) row(t *Table, name, target, result string) {
	t.add(name, fmtDur(m.work), fmtDur(m.longest), fmtDur(m.bound()), fmtDur(m.makespan), fmtRatio(m.ratio()), target, result)
}

func efficiencyGateway(ctx context.Context, e *env, steps []int) (makespan, error) {
	s := e.sizes
	fleet, err := startSims(s.EfficiencyInstances, comfysim.Options{StepDelay: s.EfficiencyStep})
	if err != nil {
		return makespan{}, err
	}
	defer fleet.close()
	g, err := e.startGateway(ctx, gatewaySpec{label: "efficiency", ports: fleet.ports()})
	if err != nil {
		return makespan{}, err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, s.EfficiencyInstances, time.Minute); err != nil {
		return makespan{}, err
	}
	n := len(steps)
	tr := newTracker(n, false)
	st, err := g.admin.dialEvents(ctx, tr.on)
	if err != nil {
		return makespan{}, err
	}
	defer st.close()
	g.profile(ctx, "")
	share0 := g.sampleCPU()
	start := time.Now()
	body := func(i int) []byte { return samplerTask(i, steps[i], comfysim.DefaultCheckpoints[0]) }
	sub := submitter{clients: s.Clients, body: body, as: func(int) *api { return g.admin }}
	if err := sub.run(ctx, n); err != nil {
		return makespan{}, err
	}
	submitted := time.Now()
	e.logf("gateway: %s tasks submitted in %s", itoa(n), fmtDur(submitted.Sub(start)))
	if err := waitOutcomes(ctx, g, tr, st, n); err != nil {
		return makespan{}, err
	}
	_, _, last := tr.counts()
	e.logf("gateway run: %s", g.sampleCPU().since(share0))
	return measured(fleet, n, start, submitted, last)
}

func efficiencyRoundRobin(ctx context.Context, e *env, steps []int) (makespan, error) {
	s := e.sizes
	fleet, err := startSims(s.EfficiencyInstances, comfysim.Options{StepDelay: s.EfficiencyStep})
	if err != nil {
		return makespan{}, err
	}
	defer fleet.close()
	n := len(steps)
	start := time.Now()
	prompt := func(i int) string { return samplerPrompt(i, steps[i], comfysim.DefaultCheckpoints[0]) }
	if _, err := e.roundRobin(ctx, fleet.urls(), "", s.Clients, n, prompt); err != nil {
		return makespan{}, err
	}
	submitted := time.Now()
	e.logf("round-robin: %s prompts submitted in %s", itoa(n), fmtDur(submitted.Sub(start)))
	if err := waitFinished(ctx, fleet.log, n, 10*time.Minute); err != nil {
		return makespan{}, err
	}
	_, _, lastEnd, _ := work(fleet.log)
	return measured(fleet, n, start, submitted, lastEnd)
}

// measured checks the fleet's log (n runs, each once, all successful) and
// returns the work it shows.
func measured(fleet *sims, n int, start, submitted, last time.Time) (makespan, error) {
	if err := checkRuns(fleet.log, n); err != nil {
		return makespan{}, err
	}
	total, longest, _, failed := work(fleet.log)
	if failed > 0 {
		return makespan{}, fmt.Errorf("%d prompts did not succeed", failed)
	}
	return makespan{instances: len(fleet.list), work: total, longest: longest, makespan: last.Sub(start),
		idle: idleTimes(fleet, start, submitted, last)}, nil
}
