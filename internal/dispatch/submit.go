package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// InsertTask inserts a new task (store.TaskInsert) and, when an instance
// of this replica is ready for work, claims the next task for it in the
// same store step and starts the run at once: the task that a wake, a
// scheduling pass and a claim of its own would have started a moment
// later, with one store step instead of two. The claim is the store's, so
// capability, fair share, priorities and warm placement choose the task as
// they do in a scheduling pass: it may be one ahead of the new one.
func (d *Dispatcher) InsertTask(ctx context.Context, p *store.TaskInsertParams) (*task.Task, error) {
	dr := d.readyAtSubmit()
	if dr == nil {
		return d.opts.Store.TaskInsert(ctx, p)
	}
	// The new task's task_queued can reach the event loop before the
	// insert returns; noted first, it wakes no scheduling pass if the task
	// is claimed here (onEvent takes the note).
	d.noteSubmitted(p.ID)
	var t *task.Task
	claimed, err := dr.claimStep(ctx, func() (*task.Task, error) {
		var claimed *task.Task
		var err error
		t, claimed, err = d.opts.Store.TaskInsertClaim(ctx, p, d.claimParams(dr))
		return claimed, err
	})
	if err != nil && claimed != nil {
		d.log.WarnContext(ctx, "claim at submit: its events were not logged", "task_id", claimed.ID, "err", err)
		err = nil
	}
	if err != nil {
		if t == nil && (errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrLimit)) {
			d.submitted.Delete(p.ID) // refused: nothing was written
			dr.release()
			return nil, err
		}
		// The insert and the claim may have been applied with the answer
		// lost (one step on either store): the claimed task may be running
		// on the instance with no run. Reconcile finds it, as in schedule;
		// started first, the driver takes no other task meanwhile.
		d.log.WarnContext(ctx, "claim at submit failed", "instance_id", dr.inst.ID, "err", err)
		dr.startReconcile()
		dr.release()
		d.queued(p.ID) // a task inserted and left pending must be seen
		if t == nil {
			return nil, err
		}
		return t, nil
	}
	if claimed == nil || claimed.ID != p.ID {
		d.queued(p.ID) // the new task waits: the scheduler must see it
	}
	if claimed == nil {
		dr.release()
		return t, nil
	}
	if dr.start(ctx, claimed, false) == nil {
		d.giveBack(context.WithoutCancel(ctx), claimed)
	}
	return t, nil
}

// submittedTTL bounds how long a task_queued note of InsertTask waits for
// its event.
const submittedTTL = time.Minute

// noteSubmitted notes that InsertTask inserts id, and drops notes whose
// task_queued never came (at most one sweep per submittedTTL).
func (d *Dispatcher) noteSubmitted(id string) {
	now := time.Now()
	d.submitted.Store(id, now)
	last := d.submittedSwept.Load()
	if now.UnixNano()-last < int64(submittedTTL) || !d.submittedSwept.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	d.submitted.Range(func(k, v any) bool {
		if now.Sub(v.(time.Time)) > submittedTTL {
			d.submitted.Delete(k)
		}
		return true
	})
}

// queued makes the scheduler see a task inserted by InsertTask and left
// pending, whether or not its task_queued event came yet.
func (d *Dispatcher) queued(id string) {
	d.submitted.Delete(id)
	d.queue.onQueued()
	d.Wake()
}

// readyAtSubmit reserves a ready driver for a claim at submit; nil when
// this replica takes no work now (draining, file store not writable) or
// no instance is ready.
func (d *Dispatcher) readyAtSubmit() *driver {
	if d.draining.Load() {
		return nil
	}
	if ok, _ := d.files.Writable(); !ok {
		return nil
	}
	return d.nextReady(nil)
}

// claimParams are the parameters of a claim for dr. The claim's step logs
// the task's task_status running and, when the instance has no run, its
// instance_status busy with the task (report.go): no step of their own
// once the prompt is submitted.
func (d *Dispatcher) claimParams(dr *driver) *store.TaskClaimParams {
	p := &store.TaskClaimParams{
		InstanceID: dr.inst.ID, LeaseOwner: d.opts.Replica, LeaseTTL: d.opts.LeaseTTL,
		Checkpoint: dr.checkpoint(), WarmWindow: d.current().WarmWindow, Now: time.Now(), LogRunning: true,
	}
	if dr.load() == 0 {
		st := dr.state()
		p.Instance = &st
	}
	declared := p.Instance != nil
	p.Events = func(t *task.Task) ([]event.Event, error) { return dr.claimWritten(t, declared), nil }
	return p
}
