package dispatch

import (
	"context"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// A driver reports its instance's run state (instance_status, busy with
// its current task or idle) with as few store steps as it can, each
// report built from the driver's state when its step is written:
//
//   - a claim for an instance with no run reports it busy with the claimed
//     task in the claim's own step (store.TaskClaimParams.Instance, or
//     claimWritten's event when the run before ended while the claim was
//     under way);
//   - a run whose outputs are collected reports its end in its task's
//     finish (endEvents);
//   - any other change (another run's end, a reattached run, a claim
//     whose step failed) is a report of its own (report), ordered with
//     the claims by stepMu.
//
// instLogged counts the claims' reports and those of their own: a finish
// whose run ended before the newest of them leaves its report out, the
// newer one said more. On SQLite the store calls claimWritten and
// endEvents in the order of its writes, so the last report logged is the
// newest. On Redis both are published after their script, so a finish's
// report racing a claim's can still land after it; the next run's start
// or end reports the instance again.

// runState is the instance's state with its current task, and that
// task's owner: the first run (a prompt prefetched behind a run that ended
// is the current one), else a task claimed whose run has not started yet.
// Caller holds mu.
func (dr *driver) runState() (instance.State, string) {
	st := instance.State{ID: dr.inst.ID, Alive: dr.alive, Enabled: dr.enabled, Busy: dr.queue > 0}
	var owner string
	switch {
	case len(dr.runs) > 0:
		st.CurrentTaskID, owner = dr.runs[0].task.ID, dr.runs[0].task.Owner
	case dr.claimed != nil:
		st.CurrentTaskID, owner = dr.claimed.ID, dr.claimed.Owner
	}
	st.Busy = st.Busy || st.CurrentTaskID != ""
	return st, owner
}

// stateEvent is the instance_status of runState. Caller holds mu.
func (dr *driver) stateEvent() event.Event { return event.Instance(dr.runState()) }

// claimStep runs the store step of a claim for dr (fn, which returns the
// task it claimed), ordered with the reports of their own. A claim whose
// step failed after its report was counted (its transaction undone, or its
// report not published) is followed by a report of the state.
func (dr *driver) claimStep(ctx context.Context, fn func() (*task.Task, error)) (*task.Task, error) {
	dr.stepMu.Lock()
	defer dr.stepMu.Unlock()
	dr.mu.Lock()
	dr.claimLogged = false
	dr.mu.Unlock()
	claimed, err := fn()
	dr.mu.Lock()
	stale := dr.claimLogged && (claimed == nil || err != nil)
	if claimed == nil {
		dr.claimed = nil
	}
	dr.claimLogged = false
	dr.mu.Unlock()
	if stale {
		dr.reportLocked(context.WithoutCancel(ctx), 0, true)
	}
	return claimed, err
}

// claimWritten is called when the claim of t is written (store.
// TaskClaimParams.Events): t is the instance's current task until its run
// starts. declared: the step reports the instance busy with t
// (TaskClaimParams.Instance). If it does not and the instance has no run
// (the run before ended while the claim was under way), the event it
// returns does.
func (dr *driver) claimWritten(t *task.Task, declared bool) []event.Event {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.claimed = t
	var evs []event.Event
	switch {
	case declared:
	case len(dr.runs) == 0:
		evs = []event.Event{dr.stateEvent()}
	default:
		return nil // the run ahead of it reports it when it ends
	}
	dr.instLogged++
	dr.claimLogged = true
	return evs
}

// endEvents builds, when the finish of the task whose run ended at mark
// is written, the instance_status that reports the run's end: the
// instance's state then. Nothing if a claim or a report of its own logged
// the instance's state after the run ended.
func (dr *driver) endEvents(mark uint64) func() []event.Event {
	return func() []event.Event {
		dr.mu.Lock()
		defer dr.mu.Unlock()
		if dr.instLogged != mark {
			return nil
		}
		return []event.Event{dr.stateEvent()}
	}
}

// report publishes the instance's run state in a step of its own, unless
// a claim or a report logged it after mark (the caller's instLogged when
// the change it reports happened); force reports it all the same.
func (dr *driver) report(ctx context.Context, mark uint64, force bool) {
	dr.stepMu.Lock()
	defer dr.stepMu.Unlock()
	dr.reportLocked(ctx, mark, force)
}

// reportLocked is report with stepMu held.
func (dr *driver) reportLocked(ctx context.Context, mark uint64, force bool) {
	dr.mu.Lock()
	if !force && dr.instLogged != mark {
		dr.mu.Unlock()
		return
	}
	dr.instLogged++
	st, owner := dr.runState()
	dr.mu.Unlock()
	dr.d.opts.Fleet.PublishRun(ctx, st, st.CurrentTaskID, owner)
}
