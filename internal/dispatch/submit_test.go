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
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// countSteps counts claims of their own and inserts with a claim.
type countSteps struct {
	store.Store
	claims, insertClaims, claimedAtInsert atomic.Int64
}

func (c *countSteps) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	c.claims.Add(1)
	return c.Store.TaskClaim(ctx, p)
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
		var got []string
		logged, err := r.st.EventsAfter(t.Context(), &store.EventsAfterParams{After: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range logged {
			if ev.TaskID == id && ev.Type == event.TypeTaskStatus {
				var d struct{ Status string }
				if err := json.Unmarshal(ev.Data, &d); err != nil {
					t.Fatal(err)
				}
				got = append(got, d.Status)
			}
		}
		if want := []string{"pending", "running", "completed"}; !slices.Equal(got, want) {
			t.Fatalf("task %d: task_status events %v, want %v", i, got, want)
		}
	}
	t.Logf("%d tasks one after another: %d inserts with a claim, %d claimed there, %d claims of their own",
		n, st.insertClaims.Load(), st.claimedAtInsert.Load(), st.claims.Load())
	if got := st.claimedAtInsert.Load(); got != n {
		t.Errorf("%d of %d tasks claimed in their insert's step, want all", got, n)
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
