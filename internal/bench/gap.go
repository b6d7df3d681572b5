package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// Target of the gap scenario.
const gapTarget = time.Millisecond // p99, with prefetch (the next prompt already waits in the instance)

// runGap queues tasks while every instance is disabled, enables them all,
// and measures on the simulators' own clocks how long each instance sits
// idle between the end of one prompt and the start of its next one.
func runGap(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	// The trivial workflow executes two nodes.
	fleet, err := startSims(s.GapInstances, comfysim.Options{NodeDelay: s.GapTaskTime / 2})
	if err != nil {
		return nil, err
	}
	defer fleet.close()
	g, err := e.startGateway(ctx, gatewaySpec{label: "gap", ports: fleet.ports()})
	if err != nil {
		return nil, err
	}
	defer g.stop()
	if err := queueDisabled(ctx, e, g, fleet, s.GapTasks, trivialTask); err != nil {
		return nil, err
	}
	tr := newTracker(s.GapTasks, false)
	st, err := g.admin.dialEvents(ctx, tr.on)
	if err != nil {
		return nil, err
	}
	defer st.close()
	g.profile(ctx, "")
	share0 := g.sampleCPU()
	start := time.Now()
	if err := g.admin.setEnabled(ctx, fleet.ids(), true); err != nil {
		return nil, err
	}
	if err := waitOutcomes(ctx, g, tr, st, s.GapTasks); err != nil {
		return nil, err
	}
	_, _, last := tr.counts()
	share := g.sampleCPU().since(share0)
	if err := checkRuns(fleet.log, s.GapTasks); err != nil {
		return nil, err
	}
	sum := summarize(dispatchGaps(fleet.log))
	t := &Table{
		Title: fmt.Sprintf("gap: dispatch gap with %s tasks queued, %d instances, %s per task",
			itoa(s.GapTasks), s.GapInstances, fmtDur(s.GapTaskTime)),
		Header: []string{"store", "gaps", "p50", "p90", "p99", "max", "drain rate", "target", "result"},
	}
	t.add(g.spec.store, itoa(sum.n), fmtMs(sum.p50), fmtMs(sum.p90), fmtMs(sum.p99), fmtMs(sum.max),
		fmtRate(s.GapTasks, last.Sub(start))+" tasks/s", "p99 < "+fmtMs(gapTarget),
		verdict(sum.p99 < gapTarget, "p99 "+fmtMs(sum.p99)))
	t.note("a gap is, per instance, the time from the simulator writing a prompt's history to it starting the instance's next prompt, from the simulator's execution log; every gap is taken while tasks are still queued")
	t.note("while draining: %s", share)
	t.note("it covers the gateway reading executing{node:null}, claiming the next task in the store, and POST /prompt (the history is read after the instance is freed)")
	return t, nil
}

// queueDisabled disables every instance, submits n tasks and waits until
// they are all pending.
func queueDisabled(ctx context.Context, e *env, g *gateway, fleet *sims, n int, body func(int) []byte) error {
	if err := g.admin.waitAlive(ctx, len(fleet.list), time.Minute); err != nil {
		return err
	}
	if err := g.admin.setEnabled(ctx, fleet.ids(), false); err != nil {
		return err
	}
	sub := submitter{clients: e.sizes.Clients, body: body, as: func(int) *api { return g.admin }}
	if err := sub.run(ctx, n); err != nil {
		return err
	}
	return g.admin.waitOverview(ctx, time.Minute, fmt.Sprintf("%d tasks pending", n), func(o overview) bool {
		return o.PendingTasks == n
	})
}

// waitOutcomes waits for n task outcomes on /ws; when the stream was closed
// early it polls the overview instead. It fails unless all n completed.
func waitOutcomes(ctx context.Context, g *gateway, tr *tracker, st *stream, n int) error {
	err := tr.wait(ctx, st.done, 10*time.Minute)
	if err == errStreamEnded {
		err = g.admin.waitOverview(ctx, 10*time.Minute, "every task finished", func(o overview) bool {
			return o.CompletedTasks+o.FailedTasks >= n
		})
	}
	if err != nil {
		return err
	}
	o, err := g.admin.overview(ctx)
	if err != nil {
		return err
	}
	if o.CompletedTasks != n {
		return fmt.Errorf("%d of %d tasks completed (%d failed)", o.CompletedTasks, n, o.FailedTasks)
	}
	return nil
}

// runsByInstance groups the log's runs by instance, in start order.
func runsByInstance(log *comfysim.Log) map[string][]comfysim.Run {
	byInstance := map[string][]comfysim.Run{}
	for _, id := range log.PromptIDs() {
		for _, r := range log.Runs(id) {
			byInstance[r.Instance] = append(byInstance[r.Instance], r)
		}
	}
	for _, runs := range byInstance {
		slices.SortFunc(runs, func(a, b comfysim.Run) int { return a.Start.Compare(b.Start) })
	}
	return byInstance
}

// dispatchGaps returns, for every instance, the time between the end of
// each run and the start of its next run.
func dispatchGaps(log *comfysim.Log) []time.Duration {
	var gaps []time.Duration
	for _, runs := range runsByInstance(log) {
		for i := 1; i < len(runs); i++ {
			gaps = append(gaps, runs[i].Start.Sub(runs[i-1].End))
		}
	}
	return gaps
}
