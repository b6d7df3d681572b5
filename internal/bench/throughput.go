package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// Target of the throughput scenario.
const throughputTarget = 2000 // completed tasks/s

// runThroughput pushes zero-duration tasks through the gateway from many
// concurrent clients, on SQLite and then on Redis, counting completions on
// /ws.
func runThroughput(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	t := &Table{
		Title: fmt.Sprintf("throughput: %s zero-duration tasks, %d instances, %d clients",
			itoa(s.ThroughputTasks), s.ThroughputInstances, s.Clients),
		Header: []string{"store", "tasks", "elapsed", "tasks/s", "gateway CPU/task", "gateway CPU", "peak RSS", "target", "result"},
	}
	for _, store := range []string{"sqlite", "redis"} {
		if store == "redis" {
			if err := pingRedis(ctx, e.opts.RedisURL); err != nil {
				t.add(store, "skipped: Redis does not answer ("+err.Error()+")")
				continue
			}
		}
		if err := throughputRun(ctx, e, store, t); err != nil {
			return nil, fmt.Errorf("%s: %w", store, err)
		}
	}
	t.note("elapsed runs from the first submit to the last task_completed event on /ws; tasks/s = tasks / elapsed")
	t.note("gateway CPU is user+system time of the gateway process over that window (/proc), in cores; the instances and clients run in the bench process")
	return t, nil
}

func throughputRun(ctx context.Context, e *env, store string, t *Table) error {
	s := e.sizes
	fleet, err := startSims(s.ThroughputInstances, comfysim.Options{})
	if err != nil {
		return err
	}
	defer fleet.close()
	g, err := e.startGateway(ctx, gatewaySpec{label: "throughput-" + store, store: store, ports: fleet.ports()})
	if err != nil {
		return err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, s.ThroughputInstances, time.Minute); err != nil {
		return err
	}
	m, err := measureBatch(ctx, e, g, s.ThroughputTasks, trivialTask, true)
	if err != nil {
		return err
	}
	if err := checkRuns(fleet.log, s.ThroughputTasks); err != nil {
		return err
	}
	rate := float64(s.ThroughputTasks) / m.elapsed.Seconds()
	t.add(store, itoa(s.ThroughputTasks), fmtDur(m.elapsed), fmtRate(s.ThroughputTasks, m.elapsed),
		fmtMs(m.cpu/time.Duration(s.ThroughputTasks)), fmt.Sprintf("%.2f cores", m.cpu.Seconds()/m.elapsed.Seconds()),
		fmtMiB(m.peak), "≥ "+itoa(throughputTarget)+" tasks/s",
		verdict(rate >= throughputTarget, fmt.Sprintf("%.2f of target", rate/throughputTarget)))
	t.note("%s: %s tasks submitted in %s (%s/s), %s completed meanwhile; the other %s drained at %s tasks/s",
		store, itoa(s.ThroughputTasks), fmtDur(m.submit), fmtRate(s.ThroughputTasks, m.submit), itoa(m.doneAtSubmit),
		itoa(s.ThroughputTasks-m.doneAtSubmit), fmtRate(s.ThroughputTasks-m.doneAtSubmit, m.elapsed-m.submit))
	t.note("%s: %s", store, m.share)
	if m.polled {
		t.note("%s: the /ws stream was closed by the gateway (client too slow); the end was found by polling the overview", store)
	}
	return nil
}

// batch is the outcome of measureBatch.
type batch struct {
	elapsed time.Duration
	// submit is how long submitting took; doneAtSubmit how many tasks had
	// completed by then.
	submit       time.Duration
	doneAtSubmit int
	cpu          time.Duration // gateway CPU time over elapsed
	peak         int64         // gateway peak RSS
	polled       bool          // the end was found by polling, not on /ws
	share        string        // where the machine's CPU went
}

// measureBatch submits n tasks from e.sizes.Clients concurrent clients and
// waits for every task_completed on /ws. The gateway may have run tasks
// before: the outcomes are counted from the overview at the start. With
// profiles, it takes the gateway's CPU profiles of the submit and the drain.
func measureBatch(ctx context.Context, e *env, g *gateway, n int, body func(int) []byte, profiles bool) (batch, error) {
	o0, err := g.admin.overview(ctx)
	if err != nil {
		return batch{}, err
	}
	tr := newTracker(n, false)
	st, err := g.admin.dialEvents(ctx, tr.on)
	if err != nil {
		return batch{}, err
	}
	defer st.close()
	cpu0, err := g.cpu()
	if err != nil {
		return batch{}, err
	}
	share0 := g.sampleCPU()
	if profiles {
		g.profile(ctx, "")
	}
	start := time.Now()
	sub := submitter{clients: e.sizes.Clients, body: body, as: func(int) *api { return g.admin },
		progress: func(done int) { e.logf("submitted %s of %s", itoa(done), itoa(n)) }}
	if err := sub.run(ctx, n); err != nil {
		return batch{}, err
	}
	var b batch
	b.submit = time.Since(start)
	b.doneAtSubmit, _, _ = tr.counts()
	if profiles {
		g.profile(ctx, "-drain")
	}
	err = tr.wait(ctx, st.done, 10*time.Minute)
	end := time.Time{}
	switch {
	case errors.Is(err, errStreamEnded):
		b.polled = true
		err = g.admin.waitOverview(ctx, 10*time.Minute, "every task finished", func(o overview) bool {
			return o.CompletedTasks+o.FailedTasks-o0.CompletedTasks-o0.FailedTasks >= n
		})
		end = time.Now()
	case err == nil:
		_, _, end = tr.counts()
	}
	if err != nil {
		return batch{}, err
	}
	cpu1, err := g.cpu()
	if err != nil {
		return batch{}, err
	}
	b.share = g.sampleCPU().since(share0)
	_, b.peak, _ = g.mem()
	b.elapsed, b.cpu = end.Sub(start), cpu1-cpu0
	o, err := g.admin.overview(ctx)
	if err != nil {
		return batch{}, err
	}
	if done := o.CompletedTasks - o0.CompletedTasks; done != n {
		return batch{}, fmt.Errorf("%d of %d tasks completed (%d failed)", done, n, o.FailedTasks-o0.FailedTasks)
	}
	return b, nil
}

// checkRuns checks that the instances ran n prompts, each once.
func checkRuns(log *comfysim.Log, n int) error {
	if got := log.Total(); got != n {
		return fmt.Errorf("the instances ran %d prompts, want %d", got, n)
	}
	if d := log.Duplicates(); len(d) > 0 {
		return fmt.Errorf("%d prompts ran more than once", len(d))
	}
	return nil
}
