package dispatch

import (
	"context"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
)

// rerouted sends the task back to the queue when this instance refused its
// prompt at validation but another instance can run it (Options.Reroute):
// a model or node class missing here only. The attempt counts, so a prompt
// every instance refuses still fails once its attempts are spent; false
// means the refusal stands and the task fails with it.
func (r *run) rerouted(ctx context.Context, pe *comfy.PromptError) bool {
	d := r.dr.d
	if d.opts.Reroute == nil {
		return false
	}
	if max := d.current().MaxAttempts; max > 0 && r.task.Attempts >= max {
		return false
	}
	if !d.opts.Reroute(ctx, r.task, r.dr.inst.ID) {
		return false
	}
	r.log.InfoContext(ctx, "instance refused the prompt; requeued for an instance that can run it",
		"type", pe.Type, "message", pe.Message)
	r.requeue(ctx, RequeueIncapable, false)
	return true
}
