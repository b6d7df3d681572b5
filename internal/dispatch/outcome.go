package dispatch

import (
	"context"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// RunEnd is how one run ended on its instance, for Options.OnRunEnd: the
// task as the store left it (final, or back to pending) and, for a
// requeue, its reason (RequeueInstanceLost...).
type RunEnd struct {
	Task     *task.Task
	Requeued string
	// Ran is how long the instance ran a completed prompt, from its
	// execution_start to its execution_success by their timestamps (the
	// instance's clock); zero when unknown.
	Ran time.Duration
}

// ran is RunEnd.Ran of a run that completed with entry: the stamps of the
// events it saw, else those of the entry's messages (read from /history).
func (r *run) ran(entry *comfy.HistoryEntry) time.Duration {
	if d, ok := comfy.Elapsed(r.startStamp, r.endStamp); ok {
		return d
	}
	d, _ := entry.RunTime()
	return d
}

// ended tells Options.OnRunEnd how the run ended.
func (r *run) ended(ctx context.Context, end RunEnd) {
	if f := r.dr.d.opts.OnRunEnd; f != nil && ctx.Err() == nil {
		f(ctx, r.dr.inst.ID, end)
	}
}
