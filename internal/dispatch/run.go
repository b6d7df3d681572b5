package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
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

	started time.Time
	// events is the prompt's events. Pointers: a buffer of Event values
	// would cost every run a quarter megabyte to allocate and clear.
	events  chan *comfy.Event
	resyncC chan struct{}
	cancelC chan struct{}
	lostC   chan struct{}
	// pullC asks a prompt still waiting in ComfyUI's queue (prefetched) to
	// come back to the gateway's queue: the instance was disabled, or the
	// prompt ahead of it is stuck.
	pullC    chan struct{}
	finished chan struct{}

	progress   *comfy.Progress
	frames     *streamed // what binary frames bring: streamed outputs, previews
	lastWrite  time.Time
	stopReason string
	verify     bool
	// foreign: the prompt was submitted under another client id (a
	// reattached run of another replica), so its events go there and the
	// driver signals resyncC on every status frame instead.
	foreign atomic.Bool
	// framesAtSubmit is the driver's frame count before the submit: if it
	// has not moved DeafAfter later, the socket is deaf.
	framesAtSubmit uint64
	// historyErrs counts /history reads the instance answered with garbage
	// or an error status, in a row.
	historyErrs int
	// released: ComfyUI is done with the prompt and the instance went back
	// to the scheduler before the outcome was read, so the driver no longer
	// signals this run; it retries its checks on a timer instead.
	released bool
	// out: the prompt no longer occupies ComfyUI's queue (read by the
	// driver to tell its own prompts from others' in status frames).
	out atomic.Bool
	// placed: the submit returned (or the run was reattached): the prompt's
	// place in ComfyUI's queue is settled. The driver takes no further task
	// until it is, so prompts reach ComfyUI in the order they were claimed.
	placed atomic.Bool
	// clock stamps the run's stages (RunStages).
	clock stageClock
	// holds: the prompt ignored its interrupt; the run holds the instance
	// from new work until the prompt is gone.
	holds atomic.Bool
	// collects: the run ends with a collection of its outputs, whose
	// finish reports the instance's state (driver.endEvents), if it was
	// known to when the instance was freed (endDeferred); endMark is the
	// driver's instLogged then.
	collects, endDeferred bool
	endMark               uint64
	// executing: ComfyUI started the prompt (execution_start or a node
	// seen); until then it waits in ComfyUI's queue and can be pulled back.
	executing bool
	// startStamp and endStamp are the timestamps of the prompt's
	// execution_start and execution_success (RunEnd.Ran).
	startStamp, endStamp int64
	// runningThere: the last check found the prompt running (not pending).
	runningThere bool
	// interruptSent: POST /interrupt went out for the prompt.
	interruptSent bool
	// outputs are the UI outputs of executed events, by node, and
	// succeeded says execution_success came: with every event of the prompt
	// seen (continuous), the outcome needs no /history read.
	outputs    map[string]comfy.NodeOutput
	succeeded  bool
	continuous bool
	// gap: an event of the prompt may have been missed (the socket
	// dropped, or the run fell too far behind to take one). Set by the
	// driver's read loop before it delivers any later event, so a run that
	// sees the prompt end without it set has seen every event.
	gap atomic.Bool
}

func newRun(dr *driver, t *task.Task, reattach bool) *run {
	r := &run{
		dr: dr, task: t, reattach: reattach, log: dr.log.With("task_id", t.ID), started: time.Now(),
		events:  make(chan *comfy.Event, 1024),
		resyncC: make(chan struct{}, 1), cancelC: make(chan struct{}, 1), lostC: make(chan struct{}, 1),
		pullC: make(chan struct{}, 1), finished: make(chan struct{}), frames: newStreamed(t, reattach, dr.d.previews),
		outputs: map[string]comfy.NodeOutput{},
	}
	r.placed.Store(reattach)
	r.clock.claimed = r.started // a reattached run is never submitted: it reports no stages
	return r
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
	case r.events <- &ev:
	default:
		r.gap.Store(true)
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
	if r.reattach {
		r.markBusy(ctx)
	} else {
		r.dr.d.opts.Metrics.TaskClaimed(r.task)
	}
	prompt, _, err := r.prepare(ctx)
	if err != nil {
		r.prepareFailed(ctx, err)
		return
	}
	r.progress = r.newProgress(prompt)
	if r.reattach {
		if !r.adopt(ctx) {
			return
		}
		r.verify = true
	} else {
		ok := r.submit(ctx, prompt)
		r.placed.Store(true)
		r.dr.d.Wake() // the instance may take its next prompt now
		if !ok {
			return
		}
		// Its task_status running (and instance_status, if the instance
		// was idle) went out with the claim (Dispatcher.claimParams).
		r.continuous = !r.verify // every event of the prompt comes to this socket from now on
	}
	r.wait(ctx, free)
}

// adopt takes over the lease of a task reattached from another replica (or
// from this one before a restart), so that replica can no longer finish or
// requeue it; false means the task is no longer running (leave it).
func (r *run) adopt(ctx context.Context) bool {
	err := storeRetryErr(ctx, func() error {
		return r.st().TaskRenewLease(ctx, &store.TaskLeaseParams{
			ID: r.task.ID, LeaseOwner: r.dr.d.opts.Replica, LeaseTTL: r.dr.d.opts.LeaseTTL, Takeover: true, Now: time.Now(),
		})
	})
	if err != nil && ctx.Err() == nil {
		r.log.InfoContext(ctx, "task no longer running; not reattached", "err", err)
	}
	return err == nil
}

// markBusy publishes that the instance runs a reattached task
// (instance_status).
func (r *run) markBusy(ctx context.Context) {
	r.dr.report(ctx, 0, true)
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
	if !r.dr.leaseLeftFor(r.dr.d.opts.LeaseTTL / 3) {
		// Renewals come every LeaseTTL/3: this lease is late, so the
		// replica was frozen or cut off from the store since the claim.
		r.log.WarnContext(ctx, "instance lease about to run out before the submit; requeueing")
		r.requeue(ctx, RequeueLeaseLost, true)
		return false
	}
	r.framesAtSubmit = r.dr.frames.Load()
	_, err := r.dr.client.Submit(ctx, comfy.SubmitParams{
		Prompt: prompt, PromptID: t.ID, ExtraData: map[string]any{"client_id": r.dr.d.opts.ClientID},
	})
	var pe *comfy.PromptError
	switch {
	case err == nil:
		r.clock.submitted = time.Now()
		return true
	case errors.As(err, &pe):
		if r.rerouted(ctx, pe) {
			return false
		}
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
