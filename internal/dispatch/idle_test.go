package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// countClaims counts the claims that found nothing pending.
type countClaims struct {
	store.Store
	claims, empty atomic.Int64
}

func (c *countClaims) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	c.claims.Add(1)
	t, err := c.Store.TaskClaim(ctx, p)
	if errors.Is(err, store.ErrNotFound) {
		c.empty.Add(1)
	}
	return t, err
}

// TestNoClaimsOnAnEmptyQueue: the wakes that come with every task (the
// instance's status frames, the run's end) do not each ask the store for
// work once a claim found the queue empty; a task submitted after that
// is still claimed at once.
func TestNoClaimsOnAnEmptyQueue(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	st := &countClaims{Store: r.st}
	r.run("a", st, nil)
	const n = 30
	for i := range n {
		tk := r.submit(fmt.Sprintf("idle-%d", i))
		r.waitStatus(tk.ID, task.StatusCompleted, 10*time.Second)
	}
	t.Logf("%d tasks one after another: %d claims, %d of them found nothing pending", n, st.claims.Load(), st.empty.Load())
	if e := st.empty.Load(); e > n+5 {
		t.Errorf("%d empty claims for %d tasks run one at a time; want at most one per task", e, n)
	}
}
