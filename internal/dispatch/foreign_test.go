package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// countBusy counts the writes of an instance's stored busy.
type countBusy struct {
	store.Store
	busy, idle atomic.Int64
}

func (c *countBusy) InstanceUpdate(ctx context.Context, p *store.InstanceUpdateParams) (instance.State, error) {
	if p.Busy != nil {
		if *p.Busy {
			c.busy.Add(1)
		} else {
			c.idle.Add(1)
		}
	}
	return c.Store.InstanceUpdate(ctx, p)
}

// foreignPrompt submits a prompt of another client straight to the
// instance, a chain of n ImageInvert nodes, and waits for it to end.
func foreignPrompt(t *testing.T, sim *comfysim.Sim, n int) {
	t.Helper()
	c, id := submitForeign(t, sim, n)
	waitFor(t, 20*time.Second, "the other client's prompt to end", func() bool {
		e, err := c.History(t.Context(), id)
		return err == nil && e != nil && (e.Status.Completed || e.Status.StatusStr != "")
	})
}

// submitForeign submits the prompt of foreignPrompt and returns at once,
// with the client and the prompt's id.
func submitForeign(t *testing.T, sim *comfysim.Sim, n int) (*comfy.Client, string) {
	t.Helper()
	p := map[string]any{"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
	for i := range n {
		p[fmt.Sprint(i+2)] = map[string]any{"class_type": "ImageInvert", "inputs": map[string]any{"image": []any{fmt.Sprint(i + 1), 0}}}
	}
	p[fmt.Sprint(n+2)] = map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{fmt.Sprint(n + 1), 0}, "filename_prefix": "other"}}
	b, _ := json.Marshal(p)
	c := comfy.New(sim.URL(), "someone-else", nil)
	id := uuid.NewString()
	if _, err := c.Submit(t.Context(), comfy.SubmitParams{Prompt: b, PromptID: id}); err != nil {
		t.Fatal(err)
	}
	return c, id
}

// TestForeignPromptsStoredBusyAfterAHold: another client's short prompts
// on a shared instance cost no store write each; one that keeps ComfyUI's
// queue busy past the hold makes the instance busy in the store, and idle
// again once it ends.
func TestForeignPromptsStoredBusyAfterAHold(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.sims[0].SetNodeDelay("ImageInvert", 100*time.Millisecond)
	st := &countBusy{Store: r.st}
	r.fl = fleet.New(st, discard())
	if _, _, err := r.fl.Set(t.Context(), r.instances(r.sims...)); err != nil {
		t.Fatal(err)
	}
	rep := r.run("a", r.st, nil)
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	for range 3 {
		foreignPrompt(t, r.sims[0], 1) // about 0.1 s each
	}
	// Past the hold after the last one: nothing may be written late either.
	time.Sleep(1500 * time.Millisecond)
	if b, i := st.busy.Load(), st.idle.Load(); b != 0 || i != 0 {
		t.Fatalf("three short foreign prompts wrote busy %d and idle %d times, want none", b, i)
	}
	foreignPrompt(t, r.sims[0], 20) // about 2 s
	waitFor(t, 5*time.Second, "the instance stored idle again", func() bool {
		s, err := r.st.InstanceGet(t.Context(), r.sims[0].Addr())
		return err == nil && !s.Busy && st.idle.Load() == 1
	})
	if b := st.busy.Load(); b != 1 {
		t.Fatalf("a long foreign prompt wrote busy %d times, want 1", b)
	}
}

// failFirstBusy fails the first write of an instance's stored busy.
type failFirstBusy struct {
	countBusy
	failed atomic.Bool
}

func (f *failFirstBusy) InstanceUpdate(ctx context.Context, p *store.InstanceUpdateParams) (instance.State, error) {
	if p.Busy != nil && *p.Busy && f.failed.CompareAndSwap(false, true) {
		return instance.State{}, fmt.Errorf("update instance: %w", store.ErrUnavailable)
	}
	return f.countBusy.InstanceUpdate(ctx, p)
}

// TestForeignBusyWriteRetried: a write of the stored busy that fails is
// tried again while the queue still holds the other client's prompt.
func TestForeignBusyWriteRetried(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, comfysim.Options{})
	r.sims[0].SetNodeDelay("ImageInvert", 100*time.Millisecond)
	st := &failFirstBusy{countBusy: countBusy{Store: r.st}}
	r.fl = fleet.New(st, discard())
	if _, _, err := r.fl.Set(t.Context(), r.instances(r.sims...)); err != nil {
		t.Fatal(err)
	}
	rep := r.run("a", r.st, nil)
	waitFor(t, 10*time.Second, "an instance ready for work", func() bool { return rep.d.ReadyInstances() > 0 })
	c, id := submitForeign(t, r.sims[0], 40) // about 4 s: the hold, a failed write, its retry
	waitFor(t, 10*time.Second, "the instance stored busy", func() bool {
		s, err := r.st.InstanceGet(t.Context(), r.sims[0].Addr())
		return err == nil && s.Busy
	})
	if !st.failed.Load() {
		t.Error("no write failed")
	}
	waitFor(t, 20*time.Second, "the other client's prompt to end", func() bool {
		e, err := c.History(t.Context(), id)
		return err == nil && e != nil && (e.Status.Completed || e.Status.StatusStr != "")
	})
	waitFor(t, 5*time.Second, "the instance stored idle again", func() bool {
		s, err := r.st.InstanceGet(t.Context(), r.sims[0].Addr())
		return err == nil && !s.Busy
	})
}
