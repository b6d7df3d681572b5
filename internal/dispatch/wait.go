package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// verdict is what a check of the instance found about the run's prompt.
type verdict int

const (
	verdictUnknown verdict = iota // the instance could not be asked
	verdictQueued                 // pending or running there
	verdictDone                   // in history
	verdictAbsent                 // in neither: it can never finish
)

// wait follows the run until its outcome is known on the instance. Every
// run has a hard end: past its deadline it is interrupted, and if the
// instance has not let go of the prompt InterruptGrace later (it ignores
// interrupt, or cannot be reached), the task ends anyway and the run holds
// the instance until the prompt is gone from it.
func (r *run) wait(ctx context.Context, free func()) {
	timer := time.NewTimer(time.Until(r.deadline()))
	defer timer.Stop()
	if r.task.CancelRequested || r.dr.d.takeEarlyCancel(r.task.ID) {
		r.signal(r.cancelC)
	}
	if r.dr.d.draining.Load() {
		r.signal(r.pullC) // claimed as the replica began to drain: not started, so back to the queue
	}
	var deafC <-chan time.Time
	if !r.reattach && !r.verify {
		deaf := time.NewTimer(r.dr.d.opts.DeafAfter)
		defer deaf.Stop()
		deafC = deaf.C
	}
	var graceC <-chan time.Time
	retry := releasedRetryMin
	for {
		if r.verify {
			if r.checkInstance(ctx, free) {
				return
			}
		}
		var retryC <-chan time.Time
		if r.verify {
			// Where the prompt is stays unknown (the instance did not
			// answer, or answered badly): ask again, backing off.
			retryC = time.After(retry)
			retry = min(2*retry, releasedRetryMax)
		}
		if r.stopReason != stopNone && graceC == nil {
			graceC = time.After(r.dr.d.current().interruptGrace())
		}
		select {
		case <-ctx.Done():
			return
		case <-retryC:
			// The driver signals lost instances to its current run only.
			if !r.dr.isAlive() && r.confirmLost(ctx, free) {
				return
			}
		case ev := <-r.events:
			started := r.executing
			if r.onEvent(ctx, *ev, free) {
				return
			}
			if !started && r.executing && !r.released {
				// The timeout counts from when ComfyUI starts the prompt: a
				// prefetched one waited in its queue behind another.
				timer.Reset(r.timeout())
			}
		case <-r.resyncC:
			r.verify = true
			r.continuous = false
		case <-r.pullC:
			if r.pullBack(ctx, free) {
				return
			}
		case <-deafC:
			r.checkDeaf(ctx)
		case <-timer.C:
			if r.released {
				r.releasedPastDeadline(ctx)
				return
			}
			if !r.executing && r.pullBack(ctx, free) {
				return // it waited in the instance's queue all along: elsewhere, then
			}
			r.interrupt(ctx, stopTimeout)
		case <-graceC:
			r.forceEnd(ctx, free)
			return
		case <-r.cancelC:
			r.interrupt(ctx, stopCancel)
		case <-r.lostC:
			if r.confirmLost(ctx, free) {
				return
			}
		}
	}
}

// checkDeaf reconnects a socket that delivered nothing since the prompt was
// submitted: ComfyUI broadcasts a status frame for every prompt it queues,
// so silence means ComfyUI detached the socket (another socket registered
// under its client id) while it stays open and answers pings.
func (r *run) checkDeaf(ctx context.Context) {
	if r.dr.frames.Load() != r.framesAtSubmit {
		return
	}
	r.log.WarnContext(ctx, "no frame from the instance since the prompt was submitted; reconnecting its socket",
		"waited", r.dr.d.opts.DeafAfter)
	r.dr.d.opts.Metrics.SocketDeaf()
	r.dr.stream.Reconnect() // OnConnect then makes the run ask the instance
}

// releasedPastDeadline: ComfyUI finished the prompt, but its outcome could
// not be read before the deadline (interrupting now would target the
// instance's next task). An instance that answers with garbage fails the
// task: another run would read the same; one that does not answer gets the
// task run again elsewhere.
func (r *run) releasedPastDeadline(ctx context.Context) {
	if r.historyErrs > 0 {
		r.finish(ctx, task.StatusFailed, nil, historyError())
		return
	}
	r.log.WarnContext(ctx, "outcome of a finished prompt unreadable until the deadline; requeueing")
	r.requeue(ctx, RequeuePromptGone, false)
}

// forceEnd ends a task whose prompt outlived its interrupt by the grace
// period, then keeps the instance from new work until the prompt is gone
// from it: the instance is busy with it, or cannot be reached.
func (r *run) forceEnd(ctx context.Context, free func()) {
	r.log.WarnContext(ctx, "instance did not let go of the interrupted prompt; ending the task and holding the instance",
		"reason", r.stopReason, "grace", r.dr.d.current().interruptGrace())
	if r.stopReason == stopCancel {
		r.finish(ctx, task.StatusCancelled, nil, nil)
	} else {
		r.finish(ctx, task.StatusFailed, nil, timeoutError())
	}
	r.dr.d.opts.Metrics.InstanceSuspect()
	r.holds.Store(true)
	for _, other := range r.dr.allRuns() {
		if other != r {
			other.signal(other.pullC) // prefetched behind a stuck prompt: elsewhere
		}
	}
	wait := releasedRetryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.lostC:
			return // health declared it dead: its next start is swept
		case <-time.After(wait):
		}
		wait = min(2*wait, stuckRetryMax)
		if v, _ := r.locate(ctx); v == verdictAbsent || v == verdictDone {
			r.log.InfoContext(ctx, "instance let go of the interrupted prompt")
			return
		}
		if r.dr.holdsLease() {
			_ = r.dr.client.Interrupt(ctx, r.task.ID)
		}
	}
}

// stuckRetryMax caps the wait between checks of a prompt that ignored its interrupt.
const stuckRetryMax = 30 * time.Second

func historyError() *task.Error {
	return &task.Error{Type: task.ErrorTypeHistory, Message: "the instance finished the prompt but answers its history with an error or garbage"}
}

// The checks of a released run whose outcome could not be read are retried
// from releasedRetryMin, doubling up to releasedRetryMax.
const (
	releasedRetryMin = 50 * time.Millisecond
	releasedRetryMax = 5 * time.Second
)

func (r *run) deadline() time.Time {
	start := r.task.StartedAt
	if start.IsZero() {
		start = time.Now()
	}
	return start.Add(r.timeout())
}

// timeout is the task's own timeout, or the scheduler's.
func (r *run) timeout() time.Duration {
	if r.task.Timeout > 0 {
		return r.task.Timeout
	}
	return r.dr.d.current().TaskTimeout
}

// pullBack takes a prompt that waits in ComfyUI's queue (prefetched, not
// started) back to the gateway's queue, without spending an attempt; true
// means the run ended. A prompt that started meanwhile stays.
func (r *run) pullBack(ctx context.Context, free func()) bool {
	if r.executing || r.released || r.stopReason != stopNone || !r.dr.holdsLease() {
		return false
	}
	if err := r.dr.client.DeleteQueued(ctx, r.task.ID); err != nil {
		r.log.WarnContext(ctx, "delete prefetched prompt failed", "err", err)
		return false
	}
	v, entry := r.locate(ctx)
	switch v {
	case verdictAbsent:
		r.log.InfoContext(ctx, "prefetched prompt taken back from the instance's queue")
		r.out.Store(true)
		r.requeue(ctx, RequeuePulledBack, true)
		return true
	case verdictDone:
		r.complete(ctx, entry, free)
		return true
	}
	if r.runningThere {
		r.executing = true
	}
	return false
}

// onEvent handles one ComfyUI event of this prompt; true means the run ended.
func (r *run) onEvent(ctx context.Context, ev comfy.Event, free func()) bool {
	if pct, changed := r.progress.Apply(ev); changed {
		r.reportProgress(ctx, pct)
	}
	switch ev.Type {
	case comfy.EventExecutionStart:
		r.executing = true
		r.clock.began = time.Now()
		r.startStamp, _ = comfy.Stamp(ev.Data)
	case comfy.EventExecuted:
		if ev.Output != nil {
			r.outputs[ev.Node] = ev.Output
		}
	case comfy.EventExecutionSuccess:
		r.succeeded = true
		r.endStamp, _ = comfy.Stamp(ev.Data)
	}
	if ev.Type != comfy.EventExecuting {
		return false
	}
	r.executing = true
	if !ev.NodeNull {
		return false
	}
	// executing{node:null}: ComfyUI is done with the prompt (and a
	// prefetched one already runs). The instance takes its next prompt
	// while the outcome is read.
	r.released = true
	r.out.Store(true)
	whole := r.succeeded && r.continuous && !r.gap.Load()
	r.collects = whole
	if whole {
		r.clock.ended = time.Now()
	}
	free()
	if whole {
		// Every event of the prompt came here: its executed events are
		// its outputs, as /history would list them.
		r.complete(ctx, &comfy.HistoryEntry{
			PromptID: r.task.ID, Outputs: r.outputs,
			Status: comfy.HistoryStatus{StatusStr: "success", Completed: true},
		}, free)
		return true
	}
	entry, err := r.dr.client.History(ctx, r.task.ID)
	if err != nil {
		r.noteHistoryErr(err)
		r.verify = true
		return false
	}
	r.complete(ctx, entry, free)
	return true
}

// checkInstance asks the instance where the prompt is; true means the run ended.
func (r *run) checkInstance(ctx context.Context, free func()) bool {
	v, entry := r.locate(ctx)
	if r.historyErrs >= maxHistoryErrs {
		// The instance answers, but not with the prompt's history: that is
		// an error of this run, not a lost instance.
		r.finish(ctx, task.StatusFailed, nil, historyError())
		return true
	}
	switch v {
	case verdictDone:
		r.complete(ctx, entry, free)
		return true
	case verdictAbsent:
		r.onAbsent(ctx)
		return true
	case verdictQueued:
		r.verify = false
		if r.runningThere {
			r.executing = true
		}
		if r.stopReason != stopNone && r.runningThere && !r.interruptSent && r.dr.holdsLease() {
			// Interrupted while it waited in the queue, and it started since.
			r.sendInterrupt(ctx)
		}
	}
	return false // unknown: retry on the next reconnect or lost signal
}

// maxHistoryErrs is how many answered but unreadable /history reads in a
// row fail a run.
const maxHistoryErrs = 5

// noteHistoryErr counts a /history read the instance answered badly; a
// read that did not reach it resets nothing and counts nothing.
func (r *run) noteHistoryErr(err error) {
	if answered(err) {
		r.historyErrs++
		r.log.WarnContext(context.Background(), "instance answered /history badly", "err", err, "in_a_row", r.historyErrs)
	}
}

// answered reports whether err is a bad answer of the instance (an error
// status or a body that does not decode), not a failure to reach it.
func answered(err error) bool {
	var he *comfy.HTTPError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	return errors.As(err, &he) || errors.As(err, &se) || errors.As(err, &te)
}

func (r *run) locate(ctx context.Context) (verdict, *comfy.HistoryEntry) {
	c := r.dr.client
	entry, err := c.History(ctx, r.task.ID)
	if err == nil {
		r.historyErrs = 0
		return verdictDone, entry
	}
	if !errors.Is(err, comfy.ErrNotInHistory) {
		r.noteHistoryErr(err)
		return verdictUnknown, nil
	}
	r.historyErrs = 0
	q, err := c.Queue(ctx)
	if err != nil {
		return verdictUnknown, nil
	}
	items := append(q.Running, q.Pending...)
	if i := slices.IndexFunc(items, func(it comfy.QueueItem) bool { return it.PromptID == r.task.ID }); i >= 0 {
		r.foreign.Store(items[i].ClientID != "" && items[i].ClientID != r.dr.d.opts.ClientID)
		r.runningThere = i < len(q.Running)
		return verdictQueued, nil
	}
	// It may have finished between the two reads.
	if entry, err := c.History(ctx, r.task.ID); err == nil {
		return verdictDone, entry
	}
	return verdictAbsent, nil
}

// onAbsent: the instance holds the prompt nowhere, so it can never finish.
func (r *run) onAbsent(ctx context.Context) {
	switch r.stopReason {
	case stopCancel:
		r.finish(ctx, task.StatusCancelled, nil, nil)
	case stopTimeout:
		r.finish(ctx, task.StatusFailed, nil, timeoutError())
	default:
		r.log.WarnContext(ctx, "prompt is gone from its instance; requeueing")
		r.requeue(ctx, RequeuePromptGone, false)
	}
}

// confirmLost handles health declaring the instance dead. A slow probe is
// not proof: if the instance still answers where the prompt is, the run
// goes on (or ends as it says). Only an instance that cannot be asked is
// lost; true means the run ended.
func (r *run) confirmLost(ctx context.Context, free func()) bool {
	cctx, cancel := context.WithTimeout(ctx, lostCheckTimeout)
	v, entry := r.locate(cctx)
	cancel()
	switch v {
	case verdictDone:
		r.complete(ctx, entry, free)
	case verdictAbsent:
		r.onAbsent(ctx)
	case verdictQueued:
		r.log.InfoContext(ctx, "instance reported down but still holds the prompt; waiting")
		return false
	default:
		r.onLost(ctx)
	}
	return true
}

// lostCheckTimeout bounds the last check of an instance reported down.
const lostCheckTimeout = 3 * time.Second

// onLost: health declared the instance dead past the failure threshold and
// it does not answer, so the run cannot be followed there any more.
func (r *run) onLost(ctx context.Context) {
	if r.stopReason == stopCancel {
		r.finish(ctx, task.StatusCancelled, nil, nil)
		return
	}
	r.log.WarnContext(ctx, "instance lost mid-run")
	r.requeue(ctx, RequeueInstanceLost, false)
}

// interrupt stops the prompt on the instance: interrupt if running, delete
// if still pending there. The outcome arrives as events or via verify.
func (r *run) interrupt(ctx context.Context, why string) {
	if r.stopReason != stopNone {
		return
	}
	r.stopReason = why
	if !r.dr.holdsLease() {
		// Another replica may drive the instance by now: leave it alone;
		// the grace period ends the task if this replica still may.
		r.log.WarnContext(ctx, "not interrupting: the instance lease ran out", "reason", why)
		r.verify = true
		return
	}
	r.log.InfoContext(ctx, "interrupting", "reason", why)
	// A prompt still waiting in the queue is only deleted: before v0.3.57
	// ComfyUI ignores prompt_id and interrupts whatever runs, which would
	// be the prompt ahead of it. The check that follows interrupts it if
	// it started meanwhile.
	if err := r.dr.client.DeleteQueued(ctx, r.task.ID); err != nil {
		r.log.WarnContext(ctx, "delete from queue failed", "err", err)
	}
	if r.executing {
		r.sendInterrupt(ctx)
	}
	r.verify = true
}

func (r *run) sendInterrupt(ctx context.Context) {
	r.interruptSent = true
	if err := r.dr.client.Interrupt(ctx, r.task.ID); err != nil {
		r.log.WarnContext(ctx, "interrupt failed", "err", err)
	}
}

func timeoutError() *task.Error {
	return &task.Error{Type: task.ErrorTypeTimeout, Message: "the run exceeded its timeout and was interrupted"}
}

// complete ends the run from its history entry.
func (r *run) complete(ctx context.Context, entry *comfy.HistoryEntry, free func()) {
	switch {
	case entry.Status.Completed:
		r.collects = true
		free() // (unless the prompt's end freed the instance already)
		var also func() []event.Event
		if r.endDeferred {
			also = r.dr.endEvents(r.endMark)
		}
		r.dr.collect(r.task, entry, r.frames, r.ran(entry), also, r.clock)
	case entry.Interrupted() && r.stopReason == stopCancel:
		r.finish(ctx, task.StatusCancelled, nil, nil)
	case entry.Interrupted() && r.stopReason == stopTimeout:
		r.finish(ctx, task.StatusFailed, nil, timeoutError())
	case entry.Interrupted():
		r.finish(ctx, task.StatusFailed, nil, &task.Error{Type: task.ErrorTypeInterrupted, Message: "the run was interrupted on its instance"})
	default:
		r.finish(ctx, task.StatusFailed, nil, executionError(entry))
	}
}

func executionError(entry *comfy.HistoryEntry) *task.Error {
	ee, ok := entry.ErrorMessage()
	if !ok {
		return &task.Error{Type: task.ErrorTypeExecution, Message: "the run failed on its instance"}
	}
	return &task.Error{
		Type: task.ErrorTypeExecution, Message: ee.ExceptionMessage, NodeID: ee.NodeID, NodeType: ee.NodeType,
		ExceptionType: ee.ExceptionType, Traceback: traceback(ee.Traceback),
	}
}

// finish moves the task to a final status and publishes it.
func (r *run) finish(ctx context.Context, to task.Status, res *task.Result, terr *task.Error) {
	t, err := storeRetry(ctx, func() (*task.Task, error) {
		return r.st().TaskFinish(ctx, &store.TaskFinishParams{
			ID: r.task.ID, From: []task.Status{task.StatusRunning}, To: to, Result: res, Error: terr,
			LeaseOwner: r.dr.d.opts.Replica, Progress: r.task.Progress, Now: time.Now(),
		})
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "finish failed (finished already, or another replica took the task over)", "to", to, "err", err)
		}
		return
	}
	r.log.InfoContext(ctx, "task finished", "status", to)
	r.dr.d.opts.Metrics.TaskFinished(t) // the store published its final events with the change
	r.ended(ctx, RunEnd{Task: t})
}

// requeue returns the task to the queue for reason, or fails it once its
// attempts are spent. refund: the attempt never reached the instance.
func (r *run) requeue(ctx context.Context, reason string, refund bool) {
	max := r.dr.d.current().MaxAttempts
	if !refund && max > 0 && r.task.Attempts >= max {
		r.finish(ctx, task.StatusFailed, nil, &task.Error{
			Type: task.ErrorTypeInstanceLost, Message: "instances were lost during every attempt",
		})
		return
	}
	t, err := storeRetry(ctx, func() (*task.Task, error) {
		return r.st().TaskRequeue(ctx, &store.TaskRequeueParams{
			ID: r.task.ID, RefundAttempt: refund, LeaseOwner: r.dr.d.opts.Replica, Progress: r.task.Progress, Now: time.Now(),
			LogEvents: true, // task_status pending and task_queued, in the requeue's step
		})
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "requeue failed (finished already, or another replica took the task over)", "err", err)
		}
		return
	}
	r.dr.d.opts.Metrics.TaskRequeued(t, reason)
	r.ended(ctx, RunEnd{Task: t, Requeued: reason})
}

// reportProgress publishes every change of the percentage or of where the
// run is, and writes the percentage to the store at most every
// progressWriteEvery.
func (r *run) reportProgress(ctx context.Context, pct int) {
	// A retry starts over; what clients saw never goes down.
	raised := pct > r.task.Progress
	pct = max(pct, r.task.Progress)
	r.task.Progress = pct
	at := r.progress.Position()
	r.publish(ctx, event.Publish(ctx, r.st(), event.TypeTaskProgress, r.task, event.TaskProgressData{
		TaskID: r.task.ID, Progress: pct, NodeID: at.NodeID, Node: at.NodeID,
		ClassType: at.ClassType, Title: at.Title, Value: at.Value, Max: at.Max,
	}))
	if r.lastWrite.IsZero() {
		r.lastWrite = r.started // the first write waits too: short runs write none
	}
	if raised && time.Since(r.lastWrite) >= progressWriteEvery {
		r.progressTo(ctx, pct)
	}
}

func (r *run) progressTo(ctx context.Context, pct int) {
	r.lastWrite = time.Now()
	err := r.st().TaskProgress(ctx, &store.TaskProgressParams{ID: r.task.ID, Progress: pct, Now: r.lastWrite})
	if err != nil && ctx.Err() == nil {
		r.log.WarnContext(ctx, "write progress failed", "err", err)
	}
}
