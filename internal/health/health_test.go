package health_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/health"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
)

// prober fails the instances in fail.
type prober struct {
	mu   sync.Mutex
	fail map[string]bool
}

func (p *prober) Probe(_ context.Context, in instance.Instance) (health.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[in.ID] {
		return health.Result{}, errors.New("connection refused")
	}
	return health.Result{}, nil
}

func (p *prober) set(id string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[id] = fail
}

func TestOnUp(t *testing.T) {
	t.Parallel()
	st, err := sqlitestore.Open(t.Context(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := fleet.New(st, log)
	if _, _, err := f.Set(t.Context(), []instance.Instance{{ID: "a:1"}, {ID: "b:1"}}); err != nil {
		t.Fatal(err)
	}
	p := &prober{fail: map[string]bool{}}
	c := health.New(f, st, p, "r1", health.Settings{Interval: time.Second, Timeout: time.Second, FailureThreshold: 2}, log)
	var mu sync.Mutex
	calls := map[string]int{}
	hookErr := map[string]error{}
	c.OnUp(func(_ context.Context, in instance.Instance) error {
		mu.Lock()
		defer mu.Unlock()
		calls[in.ID]++
		return hookErr[in.ID]
	})
	round := func(wantA, wantB int) {
		t.Helper()
		if err := c.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if calls["a:1"] != wantA || calls["b:1"] != wantB {
			t.Fatalf("OnUp calls = %v, want a:1 %d, b:1 %d", calls, wantA, wantB)
		}
	}
	mu.Lock()
	hookErr["b:1"] = errors.New("object_info: HTTP 500")
	mu.Unlock()
	round(1, 1) // first probe of each
	round(1, 2) // b's hook failed: tried again
	mu.Lock()
	hookErr["b:1"] = nil
	mu.Unlock()
	round(1, 3)
	round(1, 3) // both known: no call
	p.set("a:1", true)
	round(1, 3) // a is failing: no call
	p.set("a:1", false)
	round(2, 3) // back after a failure (a restart?): called again
}
