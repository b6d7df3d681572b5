package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
	"github.com/comfyfleet/comfyfleet/internal/workflow"
)

// progressWriteEvery bounds how often a run writes progress to the store;
// every change is still published.
const progressWriteEvery = 250 * time.Millisecond

// Why a run was interrupted by the gateway.
const (
	stopNone    = ""
	stopTimeout = "timeout"
	stopCancel  = "cancel"
)

// run is one attempt of one task on one instance.
type run struct {
	dr       *driver
	task     *task.Task
	reattach bool
	log      *slog.Logger

	started  time.Time
	events   chan comfy.Event
	resyncC  chan struct{}
	cancelC  chan struct{}
	lostC    chan struct{}
	finished chan struct{}

	progress   *comfy.Progress
	lastWrite  time.Time
	stopReason string
	verify     bool
	// released: ComfyUI is done with the prompt and the instance went back
	// to the scheduler before the outcome was read, so the driver no longer
	// signals this run; it retries its checks on a timer instead.
	released bool
}

func newRun(dr *driver, t *task.Task, reattach bool) *run {
	return &run{
		dr: dr, task: t, reattach: reattach, log: dr.log.With("task_id", t.ID), started: time.Now(),
		events:  make(chan comfy.Event, 1024),
		resyncC: make(chan struct{}, 1), cancelC: make(chan struct{}, 1), lostC: make(chan struct{}, 1),
		finished: make(chan struct{}),
	}
}

func (r *run) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deliver hands an event of this run's prompt over; if the run is far
// behind it resyncs from /history instead of blocking the read loop.
func (r *run) deliver(ev comfy.Event) {
	select {
	case r.events <- ev:
	default:
		r.signal(r.resyncC)
	}
}

func (r *run) execute(ctx context.Context) {
	defer close(r.finished)
	freed := false
	free := func() {
		if !freed {
			freed = true
			r.dr.finishRun(ctx, r)
		}
	}
	defer free()
	r.drive(ctx, free)
}

func (r *run) st() store.Store { return r.dr.d.opts.Store }

// drive submits (or reattaches) and waits for the outcome. free releases
// the instance as soon as the outcome is known there.
func (r *run) drive(ctx context.Context, free func()) {
	r.markBusy(ctx)
	prompt, nodes, err := r.prepare(ctx)
	if err != nil {
		r.prepareFailed(ctx, err)
		return
	}
	r.progress = comfy.NewProgress(nodes)
	if r.reattach {
		r.verify = true
	} else if !r.submit(ctx, prompt) {
		return
	}
	r.wait(ctx, free)
}

func (r *run) markBusy(ctx context.Context) {
	t := r.task
	r.dr.d.opts.Fleet.PublishRun(ctx, r.dr.state(), t.ID)
	if !r.reattach {
		r.dr.d.opts.Metrics.TaskClaimed(t)
		r.publish(ctx, PublishStatus(ctx, r.st(), t))
	}
}

// prepare applies params, uploading referenced files to the instance, and
// moves the outputs to the task's folder there (taskFolder). It returns the
// prompt to submit and its node count.
func (r *run) prepare(ctx context.Context) (json.RawMessage, int, error) {
	t := r.task
	p, err := workflow.Parse(t.Workflow)
	if err != nil {
		return nil, 0, err
	}
	if r.reattach {
		return nil, len(p), nil
	}
	var params map[string]json.RawMessage
	if len(t.Params) > 0 && string(t.Params) != "null" {
		if err := json.Unmarshal(t.Params, &params); err != nil {
			return nil, 0, &workflow.Error{Field: "params", Message: "must be an object"}
		}
	}
	resolved, err := p.ResolveParams(params)
	if err != nil {
		return nil, 0, err
	}
	out, err := p.ApplyWith(resolved, workflow.ApplyOptions{
		FileName:  func(f workflow.FileRef) (string, error) { return r.upload(ctx, f) },
		OutputDir: r.dr.d.taskFolder(t.ID),
	})
	return out, len(p), err
}

// submit sends the prompt; false means the run already ended (failed or requeued).
func (r *run) submit(ctx context.Context, prompt json.RawMessage) bool {
	t := r.task
	_, err := r.dr.client.Submit(ctx, comfy.SubmitParams{
		Prompt: prompt, PromptID: t.ID, ExtraData: map[string]any{"client_id": r.dr.d.opts.ClientID},
	})
	var pe *comfy.PromptError
	switch {
	case err == nil:
		return true
	case errors.As(err, &pe):
		r.finish(ctx, task.StatusFailed, nil, &task.Error{
			Type: pe.Type, Message: promptErrorMessage(pe), NodeErrors: pe.NodeErrors,
		})
		return false
	case ctx.Err() != nil:
		return false
	case neverSent(err):
		r.log.WarnContext(ctx, "instance unreachable at dispatch; requeueing", "err", err)
		r.requeue(ctx, RequeueUnreachable, true)
		return false
	}
	// The prompt may or may not have reached the instance: find out.
	r.log.WarnContext(ctx, "submit outcome unknown; verifying", "err", err)
	r.verify = true
	return true
}

func promptErrorMessage(pe *comfy.PromptError) string {
	if pe.Details != "" {
		return pe.Message + ": " + pe.Details
	}
	return pe.Message
}

// neverSent reports whether err proves the request never reached the
// instance (the connection was refused or could not be made).
func neverSent(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func (r *run) prepareFailed(ctx context.Context, err error) {
	var we *workflow.Error
	var perm *permanentError
	switch {
	case ctx.Err() != nil:
	case errors.As(err, &we):
		r.finish(ctx, task.StatusFailed, nil, &task.Error{Type: "invalid_workflow", Message: we.Error()})
	case errors.As(err, &perm):
		r.finish(ctx, task.StatusFailed, nil, perm.err)
	default:
		r.log.WarnContext(ctx, "sending inputs failed; requeueing", "err", err)
		r.requeue(ctx, RequeueInputsFailed, true)
	}
}

// permanentError is a failure that another instance would not fix.
type permanentError struct{ err *task.Error }

func (e *permanentError) Error() string { return e.err.Error() }

// upload sends one referenced file to the instance and returns the value
// LoadImage needs.
func (r *run) upload(ctx context.Context, ref workflow.FileRef) (string, error) {
	d := r.dr.d
	// Access was checked when the task was submitted.
	f, err := d.opts.Store.FileGet(ctx, ref.FileID)
	if errors.Is(err, store.ErrNotFound) {
		return "", &permanentError{&task.Error{Type: task.ErrorTypeUpload, Message: fmt.Sprintf("file %s no longer exists", ref.FileID)}}
	}
	if err != nil {
		return "", err
	}
	body, err := d.opts.Blob.Open(ctx, f.ID)
	if err != nil {
		return "", &permanentError{&task.Error{Type: task.ErrorTypeUpload, Message: fmt.Sprintf("file %s cannot be read", ref.FileID)}}
	}
	defer body.Close()
	res, err := r.dr.client.Upload(ctx, comfy.UploadParams{
		Filename: f.Filename, Body: body, Subfolder: r.dr.d.taskFolder(r.task.ID), Type: "input",
	})
	if err != nil {
		return "", fmt.Errorf("upload %s: %w", f.ID, err)
	}
	return res.Annotated(), nil
}

func (r *run) publish(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "publish failed", "err", err)
	}
}
