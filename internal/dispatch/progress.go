package dispatch

import (
	"encoding/json"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
)

// newProgress tracks the run of prompt, or of the task's workflow when
// reattaching (no prompt is sent then; the params it lacks change no node's
// class or title, at most a sampler's expected steps).
func (r *run) newProgress(prompt json.RawMessage) *comfy.Progress {
	if len(prompt) == 0 {
		prompt = r.task.Workflow
	}
	return comfy.NewProgress(prompt)
}
