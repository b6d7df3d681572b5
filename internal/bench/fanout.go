package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// fanoutInstances run the fanout scenario's tasks of fanoutTaskTime each.
const (
	fanoutInstances = 8
	fanoutTaskTime  = 10 * time.Millisecond
)

// runFanout keeps many /ws clients connected, spread over several users,
// while tasks complete at a steady rate, and measures how late each task
// event reaches each client.
func runFanout(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	fleet, err := startSims(fanoutInstances, comfysim.Options{NodeDelay: fanoutTaskTime / 2})
	if err != nil {
		return nil, err
	}
	defer fleet.close()
	users := min(s.FanoutUsers, s.FanoutClients)
	g, err := e.startGateway(ctx, gatewaySpec{label: "fanout", ports: fleet.ports(), users: users})
	if err != nil {
		return nil, err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, fanoutInstances, time.Minute); err != nil {
		return nil, err
	}
	f, err := connectFanout(ctx, e, g, users, s.FanoutClients)
	if err != nil {
		return nil, err
	}
	defer f.close()
	n := s.FanoutRate * int(s.FanoutDuration/time.Second)
	m, err := f.drive(ctx, e, n)
	if err != nil {
		return nil, err
	}
	if err := checkRuns(fleet.log, n); err != nil {
		return nil, err
	}
	return f.table(e, n, m), nil
}

// fanClient is one /ws client of the fanout scenario. Its fields are
// written by its stream's reader only, and read after the stream closed.
type fanClient struct {
	user      int
	st        *stream
	latencies []time.Duration
	completed map[string]time.Time
	events    int
	// statuses counts global_status messages, instances instance_status.
	statuses, instances int
}

// fanout is the scenario's clients.
type fanout struct {
	g       *gateway
	users   []*api
	clients []*fanClient
	// receipts counts task_completed receipts over every client; when it
	// reaches due, allDue is closed.
	receipts atomic.Int64
	due      atomic.Int64
	allDue   chan struct{}
}

// connectFanout logs the users in and opens the clients, client c as user
// c mod users.
func connectFanout(ctx context.Context, e *env, g *gateway, users, clients int) (*fanout, error) {
	f := &fanout{g: g, users: make([]*api, users), clients: make([]*fanClient, clients), allDue: make(chan struct{})}
	f.due.Store(-1)
	e.logf("logging in %s users, connecting %s clients", itoa(users), itoa(clients))
	err := forEach(ctx, users, 8, func(u int) error {
		a, err := g.login(ctx, userName(u))
		f.users[u] = a
		return err
	})
	if err != nil {
		return nil, err
	}
	err = forEach(ctx, clients, 32, func(c int) error {
		fc := &fanClient{user: c % users, completed: map[string]time.Time{}}
		st, err := f.users[fc.user].dialEvents(ctx, func(m *message, at time.Time) { f.on(fc, m, at) })
		if err != nil {
			return fmt.Errorf("client %d: %w", c, err)
		}
		fc.st = st
		f.clients[c] = fc
		return nil
	})
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// on records one message received by fc.
func (f *fanout) on(fc *fanClient, m *message, at time.Time) {
	switch m.Type {
	case "global_status":
		fc.statuses++
		return
	case "instance_status":
		fc.instances++
		return
	}
	if !strings.HasPrefix(m.Type, "task_") {
		return
	}
	fc.events++
	fc.latencies = append(fc.latencies, time.Duration(at.UnixNano()-m.Timestamp*int64(time.Millisecond)))
	if m.Type == "task_completed" {
		fc.completed[m.Data.TaskID] = at
		if f.receipts.Add(1) == f.due.Load() {
			close(f.allDue)
		}
	}
}

func (f *fanout) close() {
	for _, fc := range f.clients {
		if fc != nil && fc.st != nil {
			fc.st.close()
		}
	}
}

// fanRun is what drive measured.
type fanRun struct {
	elapsed  time.Duration
	cpu      time.Duration
	expected int // task_completed receipts due
	dropped  int // clients closed by the gateway for overflow
	ended    int // clients whose stream ended otherwise
	share    string
}

// drive submits n tasks at the scenario's rate, each as user i mod users,
// and waits until every client got every task_completed due to it (or was
// dropped).
func (f *fanout) drive(ctx context.Context, e *env, n int) (fanRun, error) {
	var r fanRun
	perUser := make([]int, len(f.users))
	for i := range n {
		perUser[i%len(f.users)]++
	}
	for _, fc := range f.clients {
		r.expected += perUser[fc.user]
	}
	f.due.Store(int64(r.expected))
	tr := newTracker(n, false)
	st, err := f.g.admin.dialEvents(ctx, tr.on)
	if err != nil {
		return r, err
	}
	defer st.close()
	cpu0, err := f.g.cpu()
	if err != nil {
		return r, err
	}
	f.g.profile(ctx, "")
	share0 := f.g.sampleCPU()
	start := time.Now()
	submit := func(ctx context.Context, i int) error {
		_, err := f.users[i%len(f.users)].submit(ctx, trivialTask(i))
		return err
	}
	if err := paced(ctx, e, e.sizes.FanoutRate, n, submit); err != nil {
		return r, err
	}
	if err := waitOutcomes(ctx, f.g, tr, st, n); err != nil {
		return r, err
	}
	_, _, last := tr.counts()
	r.elapsed = last.Sub(start)
	cpu1, err := f.g.cpu()
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	r.share = f.g.sampleCPU().since(share0)
	f.waitReceipts(ctx)
	for _, fc := range f.clients {
		switch {
		case fc.st.dropped():
			r.dropped++
		case !isOpen(fc.st):
			r.ended++
		}
	}
	return r, nil
}

// waitReceipts waits up to 30s for every task_completed receipt due; a
// client that was dropped never gets its share, so the wait is bounded and
// the counts are reported rather than required.
func (f *fanout) waitReceipts(ctx context.Context) {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-f.allDue:
	case <-t.C:
	case <-ctx.Done():
	}
}

func isOpen(s *stream) bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// paced calls submit for 0..n-1 at rate per second, from a pool of
// workers so that a slow answer does not slow the pace.
func paced(ctx context.Context, e *env, rate, n int, submit func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int, n)
	var wg sync.WaitGroup
	for range e.sizes.Clients {
		wg.Go(func() {
			for i := range jobs {
				if err := submit(ctx, i); err != nil {
					cancel(fmt.Errorf("submit task %d: %w", i, err))
				}
			}
		})
	}
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d) // pacing, not waiting for a condition
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return context.Cause(ctx)
}

// forEach calls fn for 0..n-1 from at most par goroutines; first error wins.
func forEach(ctx context.Context, n, par int, fn func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// table closes the clients and reports.
func (f *fanout) table(e *env, n int, r fanRun) *Table {
	f.close()
	var lat, spread []time.Duration
	received, events, statuses, instances := 0, 0, 0, 0
	first := map[string]time.Time{}
	for _, fc := range f.clients {
		lat = append(lat, fc.latencies...)
		events += fc.events
		statuses += fc.statuses
		instances += fc.instances
		received += len(fc.completed)
		for id, at := range fc.completed {
			if t, ok := first[id]; !ok || at.Before(t) {
				first[id] = at
			}
		}
	}
	for _, fc := range f.clients {
		for id, at := range fc.completed {
			spread = append(spread, at.Sub(first[id]))
		}
	}
	ls, ss := summarize(lat), summarize(spread)
	s := e.sizes
	t := &Table{
		Title: fmt.Sprintf("fanout: %s /ws clients over %s users, %d tasks/s for %s",
			itoa(len(f.clients)), itoa(len(f.users)), s.FanoutRate, fmtDur(s.FanoutDuration)),
		Header: []string{"figure", "value"},
	}
	t.add("tasks completed", fmt.Sprintf("%s at %s tasks/s", itoa(n), fmtRate(n, r.elapsed)))
	t.add("task events delivered", itoa(events))
	perClient := func(n int) string { return fmt.Sprintf("%.2f", float64(n)/float64(len(f.clients))/r.elapsed.Seconds()) }
	t.add("global_status per client per second", perClient(statuses))
	t.add("instance_status per client per second", perClient(instances))
	t.add("task_completed receipts", fmt.Sprintf("%s of %s", itoa(received), itoa(r.expected)))
	t.add("delivery latency p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtMs(ls.p50), fmtMs(ls.p99), fmtMs(ls.max)))
	if len(f.clients) > len(f.users) {
		t.add("spread over a user's clients p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtMs(ss.p50), fmtMs(ss.p99), fmtMs(ss.max)))
	}
	t.add("clients dropped (send queue overflow)", itoa(r.dropped))
	t.add("clients closed otherwise", itoa(r.ended))
	t.add("gateway CPU", fmt.Sprintf("%.2f cores", r.cpu.Seconds()/r.elapsed.Seconds()))
	t.note("client c is user c mod %s, so each user's task events go to %d client(s); task i is submitted as user i mod %s; global_status and instance_status go to every client",
		itoa(len(f.users)), len(f.clients)/len(f.users), itoa(len(f.users)))
	t.note("delivery latency: receipt time minus the message's timestamp (Unix ms, stamped when the gateway published the event), over every task_* message; the stamp is truncated to the millisecond, so figures read up to 1 ms high")
	if len(f.clients) > len(f.users) {
		t.note("spread: a task_completed's receipt by each of the user's clients minus its first receipt by any of them (microsecond clock)")
	}
	t.note("%s", r.share)
	t.note("no target was set for this scenario; one admin connection besides the clients counts completions")
	return t
}
