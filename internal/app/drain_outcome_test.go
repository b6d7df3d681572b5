package app

import (
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/dispatch"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func TestRunOutcome(t *testing.T) {
	t.Parallel()
	failed := func(e task.Error) dispatch.RunEnd {
		return dispatch.RunEnd{Task: &task.Task{Status: task.StatusFailed, Error: &e}}
	}
	cases := []struct {
		name string
		end  dispatch.RunEnd
		want fleet.RunOutcome
	}{
		{"completed", dispatch.RunEnd{Task: &task.Task{Status: task.StatusCompleted}}, fleet.RunOK},
		{"cancelled", dispatch.RunEnd{Task: &task.Task{Status: task.StatusCancelled}}, fleet.RunNeutral},
		{"lost mid-run", dispatch.RunEnd{Task: &task.Task{Status: task.StatusPending}, Requeued: dispatch.RequeueInstanceLost}, fleet.RunFault},
		{"prompt gone", dispatch.RunEnd{Task: &task.Task{Status: task.StatusPending}, Requeued: dispatch.RequeuePromptGone}, fleet.RunFault},
		{"pulled back", dispatch.RunEnd{Task: &task.Task{Status: task.StatusPending}, Requeued: dispatch.RequeuePulledBack}, fleet.RunNeutral},
		{"rerouted", dispatch.RunEnd{Task: &task.Task{Status: task.StatusPending}, Requeued: dispatch.RequeueIncapable}, fleet.RunNeutral},
		{"timeout", failed(task.Error{Type: task.ErrorTypeTimeout, Message: "ran past 10m"}), fleet.RunFault},
		{"attempts spent", failed(task.Error{Type: task.ErrorTypeInstanceLost}), fleet.RunFault},
		{"oom", failed(task.Error{Type: task.ErrorTypeExecution, ExceptionType: "torch.OutOfMemoryError", Message: "Allocation on device"}), fleet.RunFault},
		{"cuda", failed(task.Error{Type: task.ErrorTypeExecution, ExceptionType: "RuntimeError", Message: "CUDA error: device-side assert triggered"}), fleet.RunFault},
		{"a node's own error", failed(task.Error{Type: task.ErrorTypeExecution, ExceptionType: "ValueError", Message: "bad size"}), fleet.RunNeutral},
		{"validation", failed(task.Error{Type: "prompt_outputs_failed_validation"}), fleet.RunNeutral},
	}
	for _, c := range cases {
		if got, reason := runOutcome(c.end); got != c.want || (got == fleet.RunFault) != (reason != "") {
			t.Errorf("%s: outcome %v (%q), want %v", c.name, got, reason, c.want)
		}
	}
}
