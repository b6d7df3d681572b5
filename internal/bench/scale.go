package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// listSamples is the number of timed requests per listed page (quick: 20).
const listSamples = 50

// runScale fills the queue of a gateway without instances, measures the
// submit rate, memory and page latency, then starts a gateway in front of
// many idle instances health-checked every second and samples its CPU.
func runScale(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	t := &Table{
		Title:  fmt.Sprintf("scale: %s pending tasks; %s instances health-checked every second", itoa(s.ScaleTasks), itoa(s.ScaleInstances)),
		Header: []string{"figure", "value"},
	}
	if err := scaleQueue(ctx, e, t); err != nil {
		return nil, err
	}
	if err := scaleFleet(ctx, e, t); err != nil {
		return nil, err
	}
	t.note("queue: a gateway with no instance, so every task stays pending; %d clients submit over REST", s.Clients)
	t.note("pages: limit 20, newest first; each figure from %d requests in a row", samplesFor(e))
	t.note("fleet: a second gateway, with an empty queue, in front of %s idle simulated instances (healthCheck.interval 1000 ms, one WebSocket each); CPU sampled over %s after all were alive, in %% of one core",
		itoa(s.ScaleInstances), fmtDur(s.ScaleWindow))
	t.note("no targets were set for this scenario")
	return t, nil
}

func samplesFor(e *env) int {
	if e.opts.Quick {
		return 20
	}
	return listSamples
}

// scaleQueue is the queue half of runScale.
func scaleQueue(ctx context.Context, e *env, t *Table) error {
	n := e.sizes.ScaleTasks
	g, err := e.startGateway(ctx, gatewaySpec{label: "scale-queue"})
	if err != nil {
		return err
	}
	defer g.stop()
	g.profile(ctx, "-submit")
	start := time.Now()
	sub := submitter{clients: e.sizes.Clients, body: trivialTask, as: func(int) *api { return g.admin },
		progress: func(done int) {
			e.logf("submitted %s of %s (%s tasks/s)", itoa(done), itoa(n), fmtRate(done, time.Since(start)))
		}}
	if err := sub.run(ctx, n); err != nil {
		return err
	}
	elapsed := time.Since(start)
	rss, peak, err := g.mem()
	if err != nil {
		return err
	}
	if err := g.admin.waitOverview(ctx, time.Minute, fmt.Sprintf("%d tasks pending", n), func(o overview) bool {
		return o.PendingTasks == n
	}); err != nil {
		return err
	}
	first, err := timePage(ctx, g.admin, 0, n)
	if err != nil {
		return err
	}
	last, err := timePage(ctx, g.admin, max(n-20, 0), n)
	if err != nil {
		return err
	}
	ov, err := timeRepeated(ctx, samplesFor(e), func() error { _, err := g.admin.overview(ctx); return err })
	if err != nil {
		return err
	}
	t.add("tasks submitted", fmt.Sprintf("%s in %s", itoa(n), fmtDur(elapsed)))
	t.add("submit rate", fmtRate(n, elapsed)+" tasks/s")
	t.add("gateway RSS after submitting / peak", fmtMiB(rss)+" / "+fmtMiB(peak))
	t.add("store size", storeSize(g))
	t.add("GET /api/tasks?status=pending, first page: p50 / p99", fmtMs(first.p50)+" / "+fmtMs(first.p99))
	t.add(fmt.Sprintf("same at offset %s: p50 / p99", itoa(max(n-20, 0))), fmtMs(last.p50)+" / "+fmtMs(last.p99))
	t.add("GET /api/monitor/overview: p50 / p99", fmtMs(ov.p50)+" / "+fmtMs(ov.p99))
	return nil
}

// timePage times GET /api/tasks?status=pending at offset and checks the page.
func timePage(ctx context.Context, a *api, offset, total int) (summary, error) {
	return timeRepeated(ctx, samplesFor(a.e), func() error {
		p, err := a.listTasks(ctx, "pending", 20, offset)
		if err != nil {
			return err
		}
		if want := min(20, total-offset); p.Total != total || len(p.Items) != want {
			return fmt.Errorf("page at %d: total %d with %d items, want %d with %d", offset, p.Total, len(p.Items), total, want)
		}
		return nil
	})
}

// timeRepeated runs fn n times in a row and summarizes the durations.
func timeRepeated(ctx context.Context, n int, fn func() error) (summary, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		if ctx.Err() != nil {
			return summary{}, ctx.Err()
		}
		t0 := time.Now()
		if err := fn(); err != nil {
			return summary{}, err
		}
		ds = append(ds, time.Since(t0))
	}
	return summarize(ds), nil
}

// storeSize is the size of the SQLite files (database, WAL), or "n/a" on Redis.
func storeSize(g *gateway) string {
	if g.spec.store != "sqlite" {
		return "n/a (" + g.spec.store + ")"
	}
	files, _ := filepath.Glob(filepath.Join(g.dir, "data", "*.db*"))
	var size int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			size += fi.Size()
		}
	}
	return fmtMiB(size) + " (SQLite files)"
}

// scaleFleet is the fleet half of runScale.
func scaleFleet(ctx context.Context, e *env, t *Table) error {
	s := e.sizes
	e.logf("starting %s simulated instances", itoa(s.ScaleInstances))
	fleet, err := startSims(s.ScaleInstances, comfysim.Options{})
	if err != nil {
		return err
	}
	defer fleet.close()
	g, err := e.startGateway(ctx, gatewaySpec{label: "scale-fleet", ports: fleet.ports(), health: time.Second})
	if err != nil {
		return err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, s.ScaleInstances, 2*time.Minute); err != nil {
		return err
	}
	cpu0, err := g.cpu()
	if err != nil {
		return err
	}
	g.profile(ctx, "")
	share0 := g.sampleCPU()
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.ScaleWindow):
	}
	cpu1, err := g.cpu()
	if err != nil {
		return err
	}
	window := time.Since(t0)
	t.note("fleet window: %s", g.sampleCPU().since(share0))
	rss, _, err := g.mem()
	if err != nil {
		return err
	}
	o, err := g.admin.overview(ctx)
	if err != nil {
		return err
	}
	if o.AliveInstances != s.ScaleInstances {
		return fmt.Errorf("%d of %d instances alive after the window", o.AliveInstances, s.ScaleInstances)
	}
	t.add(fmt.Sprintf("gateway CPU with %s instances", itoa(s.ScaleInstances)), fmt.Sprintf("%.1f%% of a core", 100*(cpu1-cpu0).Seconds()/window.Seconds()))
	t.add(fmt.Sprintf("gateway RSS with %s instances", itoa(s.ScaleInstances)), fmtMiB(rss))
	return nil
}
