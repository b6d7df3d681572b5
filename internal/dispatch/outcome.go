package dispatch

import (
	"context"

	"github.com/comfyfleet/comfyfleet/internal/task"
)

// RunEnd is how one run ended on its instance, for Options.OnRunEnd: the
// task as the store left it (final, or back to pending) and, for a
// requeue, its reason (RequeueInstanceLost...).
type RunEnd struct {
	Task     *task.Task
	Requeued string
}

// ended tells Options.OnRunEnd how the run ended.
func (r *run) ended(ctx context.Context, end RunEnd) {
	if f := r.dr.d.opts.OnRunEnd; f != nil && ctx.Err() == nil {
		f(ctx, r.dr.inst.ID, end)
	}
}
