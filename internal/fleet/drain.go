package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// RunOutcome is how a run ended, as far as its instance is concerned.
type RunOutcome int

// Run outcomes: RunFault counts towards an automatic drain, RunOK resets
// the count, RunNeutral (the workflow's own errors, a cancel) leaves it.
const (
	RunNeutral RunOutcome = iota
	RunOK
	RunFault
)

// RunEnded records how a run on instance id ended. A fault adds one to the
// instance's runs failed in a row; the after-th one (after > 0) disables the
// instance automatically, with reason (what went wrong last) shown as its
// drain reason, and publishes instance_status. A completed run resets the
// count. The caller is the replica driving the instance (it holds its
// lease), so the count is not raced.
func (f *Fleet) RunEnded(ctx context.Context, id string, outcome RunOutcome, reason string, after int) error {
	if outcome == RunNeutral || outcome == RunOK && f.clean(id) {
		return nil // a completed run where none failed before costs no store access
	}
	st, err := f.Get(ctx, id)
	if err != nil {
		return err
	}
	if outcome == RunOK {
		if st.RunFailures != 0 {
			zero := 0
			if _, err := f.Update(ctx, &store.InstanceUpdateParams{ID: id, RunFailures: &zero}); err != nil {
				return err
			}
		}
		f.setClean(id, true)
		return nil
	}
	f.setClean(id, false)
	n := st.RunFailures + 1
	p := &store.InstanceUpdateParams{ID: id, RunFailures: &n}
	if after > 0 && n >= after && st.Enabled {
		off, auto, now := false, true, time.Now()
		runs := "runs"
		if n == 1 {
			runs = "run"
		}
		why := fmt.Sprintf("drained automatically: %d %s failed in a row for the instance's own reasons; last: %s", n, runs, reason)
		p.Enabled, p.AutoDrained, p.DrainReason, p.DrainedAt = &off, &auto, &why, &now
		f.log.WarnContext(ctx, "instance drained automatically", "instance_id", id, "run_failures", n, "reason", reason)
	}
	_, err = f.Update(ctx, p)
	return err
}

// clean reports whether this replica knows id's last run to have completed.
func (f *Fleet) clean(id string) bool {
	f.cleanMu.Lock()
	defer f.cleanMu.Unlock()
	return f.cleanRuns[id]
}

func (f *Fleet) setClean(id string, clean bool) {
	f.cleanMu.Lock()
	defer f.cleanMu.Unlock()
	if f.cleanRuns == nil {
		f.cleanRuns = map[string]bool{}
	}
	if clean {
		f.cleanRuns[id] = true
	} else {
		delete(f.cleanRuns, id)
	}
}

// ReenableDue reports whether st is an automatically drained instance
// whose cooldown has passed at now: the next passing probe may enable it.
func ReenableDue(st instance.State, cooldown time.Duration, now time.Time) bool {
	return st.AutoDrained && !st.Enabled && !now.Before(st.DrainedAt.Add(cooldown))
}

// Reenable enables an automatically drained instance again once cooldown
// has passed since it was drained; the health checker calls it after a
// passing probe. It reports whether it did.
func (f *Fleet) Reenable(ctx context.Context, st instance.State, cooldown time.Duration, now time.Time) (bool, error) {
	if !ReenableDue(st, cooldown, now) {
		return false, nil
	}
	if _, err := f.Update(ctx, Enable(st.ID, true)); err != nil {
		return false, err
	}
	f.setClean(st.ID, false)
	f.log.InfoContext(ctx, "instance enabled again after its cooldown and a passing probe", "instance_id", st.ID)
	return true, nil
}

// ProbeFailed keeps automatically drained instance id drained after its
// probe workflow failed with perr: the drain reason says so and the
// cooldown starts again at now. An instance an operator enabled or
// disabled meanwhile is left as it is.
func (f *Fleet) ProbeFailed(ctx context.Context, id string, perr error, now time.Time) error {
	st, err := f.Get(ctx, id)
	if err != nil {
		return err
	}
	if !st.AutoDrained || st.Enabled {
		return nil
	}
	why := "drained automatically; the probe after the cooldown failed: " + perr.Error()
	f.log.WarnContext(ctx, "instance stays drained: its probe failed", "instance_id", id, "err", perr)
	_, err = f.Update(ctx, &store.InstanceUpdateParams{ID: id, DrainReason: &why, DrainedAt: &now})
	return err
}

// Enable is the update that enables (or disables) an instance by an
// operator's or the gateway's decision: the automatic drain's state is
// cleared either way, so an operator's choice is never undone by a probe.
func Enable(id string, enabled bool) *store.InstanceUpdateParams {
	zero, no, empty, never := 0, false, "", time.Time{}
	return &store.InstanceUpdateParams{ID: id, Enabled: &enabled, RunFailures: &zero, AutoDrained: &no,
		DrainReason: &empty, DrainedAt: &never}
}
