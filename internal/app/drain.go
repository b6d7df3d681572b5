package app

import (
	"context"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/dispatch"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// runEnded is the dispatcher's OnRunEnd: it counts the runs an instance
// fails for its own reasons and drains it after
// healthCheck.drainAfterFailures of them in a row (fleet.RunEnded).
//
// A completed run also teaches the estimator how long its shape runs there.
func (a *App) runEnded(ctx context.Context, instanceID string, end dispatch.RunEnd) {
	if end.Requeued == "" && end.Task.Status == task.StatusCompleted && end.Ran > 0 {
		if err := a.eta.Observe(ctx, instanceID, end.Task, end.Ran); err != nil && ctx.Err() == nil {
			a.log.WarnContext(ctx, "record run duration failed", "instance_id", instanceID, "task_id", end.Task.ID, "err", err)
		}
	}
	outcome, reason := runOutcome(end)
	after := a.cfg.Current().HealthCheck.DrainAfterFailures
	if err := a.fleet.RunEnded(ctx, instanceID, outcome, reason, max(after, 0)); err != nil && ctx.Err() == nil {
		a.log.WarnContext(ctx, "record run outcome failed", "instance_id", instanceID, "task_id", end.Task.ID, "err", err)
	}
}

// runOutcome says whether a run's end is the instance's fault: it crashed
// or was lost mid-run, ran out of memory, hit a CUDA (or other device)
// error, timed out, or could not give the outputs back. A workflow's own
// errors (validation, a node raising on its inputs) and cancels are
// neutral: they say nothing about the instance.
func runOutcome(end dispatch.RunEnd) (fleet.RunOutcome, string) {
	switch end.Requeued {
	case "":
	case dispatch.RequeueInstanceLost, dispatch.RequeuePromptGone:
		return fleet.RunFault, "the instance lost the run (" + end.Requeued + ")"
	default:
		return fleet.RunNeutral, ""
	}
	t := end.Task
	switch {
	case t.Status == task.StatusCompleted:
		return fleet.RunOK, ""
	case t.Status != task.StatusFailed || t.Error == nil:
		return fleet.RunNeutral, ""
	}
	e := t.Error
	switch e.Type {
	case task.ErrorTypeTimeout, task.ErrorTypeInstanceLost, task.ErrorTypeHistory, task.ErrorTypeOutput:
		return fleet.RunFault, e.Type + ": " + firstLine(e.Message)
	case task.ErrorTypeExecution:
		if deviceError(e.ExceptionType + " " + e.Message) {
			return fleet.RunFault, strings.TrimSpace(e.ExceptionType + ": " + firstLine(e.Message))
		}
	}
	return fleet.RunNeutral, ""
}

// deviceErrors are what the exceptions of a failing GPU or its driver say
// (PyTorch's CUDA, ROCm and MPS errors, out of memory).
var deviceErrors = []string{
	"out of memory", "outofmemoryerror", "cuda error", "cuda out of", "cudnn", "cublas", "cufft", "nccl",
	"device-side assert", "hip error", "mps backend", "illegal memory access", "no kernel image",
}

// deviceError reports whether an exception's type and message name a
// device failure rather than the workflow's.
func deviceError(s string) bool {
	s = strings.ToLower(s)
	for _, d := range deviceErrors {
		if strings.Contains(s, d) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}
