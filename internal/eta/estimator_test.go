package eta

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Two requirements of two shapes: x runs on a and b, y on b only.
var (
	capX = &store.CapParams{Key: "capx", Instances: []string{"a", "b"},
		Data: []byte(`{"prompt":{"1":{"class":"EmptyImage"},"2":{"class":"SaveImage","inputs":{"images":["1",0]}}}}`)}
	capY = &store.CapParams{Key: "capy", Instances: []string{"b"},
		Data: []byte(`{"prompt":{"1":{"class":"EmptyImage"},"2":{"class":"ImageInvert","inputs":{"image":["1",0]}}}}`)}
)

// bothStores runs fn on SQLite and on Redis (skipped without
// TEST_REDIS_URL outside CI, as every Redis test).
func bothStores(t *testing.T, fn func(t *testing.T, s store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "eta.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		u := redistest.URL(t)
		s, err := redisstore.Open(context.Background(), u, redisstore.WithPrefix(redistest.Prefix(t, u)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
}

// fleet is a store with instances a and b up, and an estimator on it.
type fleet struct {
	t   *testing.T
	s   store.Store
	e   *Estimator
	seq int
}

func newFleet(t *testing.T, s store.Store) *fleet {
	for _, id := range []string{"a", "b"} {
		up := true
		if _, err := s.InstanceUpdate(t.Context(), &store.InstanceUpdateParams{ID: id, Enabled: &up, Alive: &up}); err != nil {
			t.Fatal(err)
		}
	}
	return &fleet{t: t, s: s, e: New(s, func() []string { return []string{"a", "b"} })}
}

// submit queues a task of requirement c, submitted at t0 + n ms.
func (f *fleet) submit(c *store.CapParams) *task.Task {
	f.t.Helper()
	f.seq++
	tk, err := f.s.TaskInsert(f.t.Context(), &store.TaskInsertParams{
		ID: "t" + time.Duration(f.seq).String(), Owner: "alice", Workflow: []byte(`{}`), Cap: c, Now: t0.Add(time.Duration(f.seq) * time.Millisecond),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return tk
}

// observe records n runs of c's shape on instance, each d long.
func (f *fleet) observe(c *store.CapParams, instance string, n int, d time.Duration) {
	f.t.Helper()
	shape, err := ShapeOfRequirement(c.Data)
	if err != nil {
		f.t.Fatal(err)
	}
	for range n {
		f.e.Durations().Observe(shape, instance, d)
	}
}

// estimate estimates tasks at t0 + 1 s.
func (f *fleet) estimate(tasks ...*task.Task) map[string]Estimate {
	f.t.Helper()
	est, err := f.e.Estimate(f.t.Context(), t0.Add(time.Second), tasks)
	if err != nil {
		f.t.Fatal(err)
	}
	return est
}

// want checks a task's estimate against (position, start, finish) in
// seconds after t0 + 1 s.
func (f *fleet) want(est map[string]Estimate, tk *task.Task, pos int, start, finish float64) {
	f.t.Helper()
	now := t0.Add(time.Second)
	got, ok := est[tk.ID]
	if !ok {
		f.t.Errorf("task at position %d: no estimate", pos)
		return
	}
	if got.Position != pos || !got.Start.Equal(now.Add(sec(start))) || !got.Finish.Equal(now.Add(sec(finish))) {
		f.t.Errorf("task at position %d: got position %d, %v..%v; want %d, %v..%v", pos,
			got.Position, got.Start.Sub(now), got.Finish.Sub(now), pos, sec(start), sec(finish))
	}
}

// TestEstimateNothingObserved: before any run, no estimate.
func TestEstimateNothingObserved(t *testing.T) {
	bothStores(t, func(t *testing.T, s store.Store) {
		f := newFleet(t, s)
		tk := f.submit(capX)
		if est := f.estimate(tk); len(est) != 0 {
			t.Errorf("estimates with nothing observed: %v", est)
		}
		// A run of another shape teaches nothing about this one.
		f.observe(capY, "b", 1, sec(3))
		if est := f.estimate(tk); len(est) != 0 {
			t.Errorf("estimates with only another shape observed: %v", est)
		}
	})
}

// TestEstimateQueue: after runs of 10 s, the queue is spread over the
// instances able to run each task, and the estimates grow with depth.
func TestEstimateQueue(t *testing.T) {
	bothStores(t, func(t *testing.T, s store.Store) {
		f := newFleet(t, s)
		f.observe(capX, "a", 3, sec(10))
		f.observe(capX, "b", 3, sec(10))
		f.observe(capY, "b", 2, sec(4))
		q := []*task.Task{f.submit(capX), f.submit(capX), f.submit(capY), f.submit(capX), f.submit(capX)}
		est := f.estimate(q...)
		f.want(est, q[0], 1, 0, 10)  // a
		f.want(est, q[1], 2, 0, 10)  // b
		f.want(est, q[2], 3, 10, 14) // b only
		f.want(est, q[3], 4, 10, 20) // a
		f.want(est, q[4], 5, 14, 24) // b
		// One task alone gets the same as in the batch.
		f.want(f.estimate(q[4]), q[4], 5, 14, 24)

		// a runs the head since 4 s ago: it is free in 6 s.
		if _, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "a", LeaseOwner: "r", LeaseTTL: time.Minute, Now: t0.Add(-3 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		est = f.estimate(q[1:]...)
		f.want(est, q[1], 1, 0, 10) // b
		f.want(est, q[2], 2, 10, 14)
		f.want(est, q[3], 3, 6, 16) // a
		f.want(est, q[4], 4, 14, 24)
		if _, ok := est[q[0].ID]; ok {
			t.Error("a running task has an estimate")
		}
	})
}

// TestEstimateInstanceDown: a task only a down instance runs has no
// estimate; the others are spread over those up.
func TestEstimateInstanceDown(t *testing.T) {
	bothStores(t, func(t *testing.T, s store.Store) {
		f := newFleet(t, s)
		f.observe(capX, "a", 1, sec(10))
		f.observe(capY, "b", 1, sec(4))
		down := false
		if _, err := s.InstanceUpdate(t.Context(), &store.InstanceUpdateParams{ID: "b", Enabled: &down}); err != nil {
			t.Fatal(err)
		}
		x1, y, x2 := f.submit(capX), f.submit(capY), f.submit(capX)
		est := f.estimate(x1, y, x2)
		f.want(est, x1, 1, 0, 10)
		f.want(est, x2, 3, 10, 20)
		if _, ok := est[y.ID]; ok {
			t.Error("a task only a disabled instance runs has an estimate")
		}
	})
}

// TestEstimatePastHead: the tasks past the walked head count as the
// typical duration each, spread over the instances.
func TestEstimatePastHead(t *testing.T) {
	bothStores(t, func(t *testing.T, s store.Store) {
		f := newFleet(t, s)
		f.e.headLimit = 2
		f.observe(capX, "a", 1, sec(10))
		q := []*task.Task{f.submit(capX), f.submit(capX), f.submit(capX), f.submit(capX), f.submit(capX)}
		est := f.estimate(q[1], q[4])
		f.want(est, q[1], 2, 0, 10)
		// Two walked (a and b busy for 10 s), two skipped (10 s each over
		// two instances: 10 s more each), then the fifth.
		f.want(est, q[4], 5, 20, 30)
	})
}
