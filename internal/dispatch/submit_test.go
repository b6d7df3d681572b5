package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/dispatch"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// countSteps counts claims of their own and inserts with a claim.
type countSteps struct {
	store.Store
	claims, insertClaims, claimedAtInsert atomic.Int64
	instancePublishes                     atomic.Int64
}

func (c *countSteps) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	c.claims.Add(1)
	return c.Store.TaskClaim(ctx, p)
}

// Publish counts the steps of their own that log an instance_status.
func (c *countSteps) Publish(ctx context.Context, evs ...event.Event) error {
	for _, ev := range evs {
		if ev.Type == event.TypeInstanceStatus {
			c.instancePublishes.Add(1)
			break
		}
	}
	return c.Store.Publish(ctx, evs...)
}

func (c *countSteps) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, cl *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	c.insertClaims.Add(1)
	t, claimed, err := c.Store.TaskInsertClaim(ctx, p, cl)
	if claimed != nil {
		c.claimedAtInsert.Add(1)
	}
	return t, claimed, err
}

// TestInsertTaskClaimsForAnIdleInstance: a task submitted while an
// instance waits for work is claimed in its insert's step and runs, with
// no claim of its own, its task_status running logged with the claim; the
// task's events come in their order.
func TestInsertTaskClaimsForAnIdleInstance(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	st := &countSteps{Store: r.st}
	r.fl = fleet.New(st, discard()) // the dispatcher's instance events go through st too
	if _, _, err := r.fl.Set(t.Context(), r.instances(r.sims...)); err != nil {
		t.Fatal(err)
	}
	rep := r.run("a", st, nil)
	const n = 10
	for i := range n {
		waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
		id := uuid.NewString()
		evs, err := event.Pending(&task.Task{ID: id, Owner: "alice", Status: task.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		before, err := r.st.LastEventSeq(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tk, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: id, Owner: "alice", Workflow: workflow(fmt.Sprintf("at-submit-%d", i)), Now: time.Now(), Events: evs,
		})
		if err != nil {
			t.Fatal(err)
		}
		r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
		// The events are logged with the finish, which waitStatus saw.
		var got []string
		logged, err := r.st.EventsAfter(t.Context(), &store.EventsAfterParams{After: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range logged {
			var d struct {
				Status        string
				Busy          bool
				CurrentTaskID string
			}
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			switch {
			case ev.TaskID == id && ev.Type == event.TypeTaskStatus:
				got = append(got, d.Status)
			case ev.Type == event.TypeInstanceStatus && d.Busy && d.CurrentTaskID == id:
				got = append(got, "instance busy with it")
			case ev.Type == event.TypeInstanceStatus && !d.Busy && d.CurrentTaskID == "":
				got = append(got, "instance idle")
			case ev.Type == event.TypeInstanceStatus:
				got = append(got, fmt.Sprintf("instance busy %v with %q", d.Busy, d.CurrentTaskID))
			}
		}
		want := []string{"pending", "instance busy with it", "running", "completed", "instance idle"}
		if !slices.Equal(got, want) {
			t.Fatalf("task %d: events %q, want %q", i, got, want)
		}
	}
	t.Logf("%d tasks one after another: %d inserts with a claim, %d claimed there, %d claims of their own",
		n, st.insertClaims.Load(), st.claimedAtInsert.Load(), st.claims.Load())
	if got := st.claimedAtInsert.Load(); got != n {
		t.Errorf("%d of %d tasks claimed in their insert's step, want all", got, n)
	}
	// A run's start and end are logged with its claim and its finish.
	if got := st.instancePublishes.Load(); got != 0 {
		t.Errorf("%d steps of their own for instance_status for %d tasks, want none", got, n)
	}
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestInstanceStatusFollowsPrefetch: with a prompt prefetched behind the
// running one, the instance stays busy, its current task the one ComfyUI
// runs: the first task's end names the prefetched task, and the instance
// is idle only after the last.
func TestInstanceStatusFollowsPrefetch(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{NodeDelay: 50 * time.Millisecond})
	rep := r.run("a", r.st, func(o *dispatch.Options) { o.Settings.Prefetch = 1 })
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	before, err := r.st.LastEventSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 2 {
		id := uuid.NewString()
		evs, err := event.Pending(&task.Task{ID: id, Owner: "alice", Status: task.StatusPending})
		if err != nil {
			t.Fatal(err)
		}
		tk, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
			ID: id, Owner: "alice", Workflow: workflow(fmt.Sprintf("prefetch-%d", i)), Now: time.Now(), Events: evs,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	for _, id := range ids {
		r.waitStatus(id, task.StatusCompleted, 10*time.Second)
	}
	logged, err := r.st.EventsAfter(t.Context(), &store.EventsAfterParams{After: before})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range logged {
		var d struct {
			Status        string
			Busy          bool
			CurrentTaskID string
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		name := map[string]string{ids[0]: "first", ids[1]: "second", "": "none"}[d.CurrentTaskID]
		switch ev.Type {
		case event.TypeTaskStatus:
			if d.Status != "pending" {
				got = append(got, map[string]string{ids[0]: "first", ids[1]: "second"}[ev.TaskID]+" "+d.Status)
			}
		case event.TypeInstanceStatus:
			got = append(got, fmt.Sprintf("instance busy=%v with %s", d.Busy, name))
		}
	}
	want := []string{
		"instance busy=true with first", "first running", "second running",
		"first completed", "instance busy=true with second",
		"second completed", "instance busy=false with none",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// lostInsertClaimAnswer applies the first insert that claims a task but
// answers it as a store that died mid-call: the insert and the claim
// happened (one step), the replica knows neither.
type lostInsertClaimAnswer struct {
	store.Store
	lost atomic.Bool
}

func (l *lostInsertClaimAnswer) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, c *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	t, claimed, err := l.Store.TaskInsertClaim(ctx, p, c)
	if err == nil && claimed != nil && l.lost.CompareAndSwap(false, true) {
		return nil, nil, fmt.Errorf("insert task %s: %w: EOF", p.ID, store.ErrUnavailable)
	}
	return t, claimed, err
}

// TestInsertClaimAnswerLost: a task inserted and claimed at submit by a
// call whose answer was lost is found by the driver's reconcile and runs,
// instead of staying running on the instance with no run for good.
func TestInsertClaimAnswerLost(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	st := &lostInsertClaimAnswer{Store: r.st}
	rep := r.run("a", st, nil)
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	id := uuid.NewString()
	if _, err := rep.d.InsertTask(t.Context(), &store.TaskInsertParams{
		ID: id, Owner: "alice", Workflow: workflow("lost-insert-claim"), Now: time.Now(),
	}); err == nil || !st.lost.Load() {
		t.Fatalf("InsertTask: err = %v, answer lost = %v; want the lost answer's error", err, st.lost.Load())
	}
	r.waitStatus(id, task.StatusCompleted, 10*time.Second)
	if n := r.log.Count(id); n != 1 {
		t.Errorf("runs = %d, want 1", n)
	}
}
