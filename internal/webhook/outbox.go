package webhook

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Event types of webhooks: "task." and the status the task reached.
const (
	TaskPending   = "task.pending"
	TaskRunning   = "task.running"
	TaskCompleted = "task.completed"
	TaskFailed    = "task.failed"
	TaskCancelled = "task.cancelled"
)

// EventTypes lists every event type, in a task's order.
var EventTypes = []string{TaskPending, TaskRunning, TaskCompleted, TaskFailed, TaskCancelled}

// DefaultEvents are the events of a subscription that names none: a
// task's end.
var DefaultEvents = []string{TaskCompleted, TaskFailed, TaskCancelled}

// EventQueued is the internal event published after deliveries were
// queued: it wakes the deliverers of every replica.
const EventQueued = "webhook_queued"

// Payload is the body of a delivery.
type Payload struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	// Data is the task event's data: taskId, status, instanceId, and
	// progress and attempts, result or error as the event has them.
	Data json.RawMessage `json:"data"`
}

// Outbox is a store whose Publish also queues the webhook deliveries of
// the task events it publishes, before publishing them, in the store: the
// replica that changes a task queues its deliveries, once, and they
// survive a restart.
type Outbox struct {
	store.Store
	log *slog.Logger
}

// NewOutbox wraps st.
func NewOutbox(st store.Store, log *slog.Logger) *Outbox { return &Outbox{Store: st, log: log} }

// Publish queues the deliveries of task events, then publishes them. An
// enqueue that fails is logged and the events published anyway.
func (o *Outbox) Publish(ctx context.Context, evs ...event.Event) error {
	for _, ev := range evs {
		o.enqueue(ctx, ev)
	}
	return o.Store.Publish(ctx, evs...)
}

// TaskInsert inserts a task and queues the deliveries of the events the
// store logged with it (p.Events), right after the insert, as TaskFinish
// does for a task's final events.
func (o *Outbox) TaskInsert(ctx context.Context, p *store.TaskInsertParams) (*task.Task, error) {
	t, err := o.Store.TaskInsert(ctx, p)
	if err != nil {
		return t, err
	}
	for _, ev := range p.Events {
		o.enqueue(ctx, ev)
	}
	return t, nil
}

// TaskInsertClaim is TaskInsert with a claim in the same step; it queues
// the deliveries of the insert's events and of the claim's.
func (o *Outbox) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, c *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	c, claimEvents := captureClaimEvents(c)
	t, claimed, err := o.Store.TaskInsertClaim(ctx, p, c)
	if t == nil {
		return t, claimed, err
	}
	for _, ev := range p.Events {
		o.enqueue(ctx, ev)
	}
	if claimed != nil {
		for _, ev := range *claimEvents {
			o.enqueue(ctx, ev)
		}
	}
	return t, claimed, err
}

// TaskClaim claims a task and queues the deliveries of the events its
// step logged (p.Events).
func (o *Outbox) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	p, claimEvents := captureClaimEvents(p)
	t, err := o.Store.TaskClaim(ctx, p)
	if t != nil {
		for _, ev := range *claimEvents {
			o.enqueue(ctx, ev)
		}
	}
	return t, err
}

// captureClaimEvents returns a copy of p whose Events also keeps what it
// built in *evs.
func captureClaimEvents(p *store.TaskClaimParams) (*store.TaskClaimParams, *[]event.Event) {
	evs := new([]event.Event)
	if p == nil || p.Events == nil {
		return p, evs
	}
	c := *p
	c.Events = func(t *task.Task) ([]event.Event, error) {
		out, err := p.Events(t)
		*evs = out
		return out, err
	}
	return &c, evs
}

// TaskRequeue requeues a task and, when the store logged its events
// (p.LogEvents), queues their deliveries right after.
func (o *Outbox) TaskRequeue(ctx context.Context, p *store.TaskRequeueParams) (*task.Task, error) {
	t, err := o.Store.TaskRequeue(ctx, p)
	if err != nil || !p.LogEvents {
		return t, err
	}
	evs, err := event.Pending(t)
	if err != nil {
		o.log.ErrorContext(ctx, "build pending events for webhooks failed", "task_id", t.ID, "err", err)
		return t, nil
	}
	for _, ev := range evs {
		ev.Time = p.Now.UnixMilli()
		o.enqueue(ctx, ev)
	}
	return t, nil
}

// TaskRequestCancel cancels a task and, when the store logged the
// cancel's events (p.LogEvents), queues their deliveries right after.
func (o *Outbox) TaskRequestCancel(ctx context.Context, p *store.TaskCancelParams) (*task.Task, error) {
	t, err := o.Store.TaskRequestCancel(ctx, p)
	if err != nil || !p.LogEvents {
		return t, err
	}
	evs, err := event.Cancel(t)
	if err != nil {
		o.log.ErrorContext(ctx, "build cancel events for webhooks failed", "task_id", t.ID, "err", err)
		return t, nil
	}
	for _, ev := range evs {
		ev.Time = p.Now.UnixMilli()
		o.enqueue(ctx, ev)
	}
	return t, nil
}

// TaskFinish finishes a task and queues the deliveries of its final
// events. The store logs and publishes those events itself, in the step
// that finishes the task (store.TaskStore.TaskFinish), so they never pass
// through Publish. The deliveries are queued right after that step: a
// replica killed between the two loses them (the next step would be to
// queue them in the same transaction or script).
func (o *Outbox) TaskFinish(ctx context.Context, p *store.TaskFinishParams) (*task.Task, error) {
	t, err := o.Store.TaskFinish(ctx, p)
	if err != nil {
		return t, err
	}
	evs, err := event.Final(t)
	if err != nil {
		o.log.ErrorContext(ctx, "build final events for webhooks failed", "task_id", t.ID, "err", err)
		return t, nil
	}
	for _, ev := range evs {
		if ev.Time == 0 {
			ev.Time = p.Now.UnixMilli()
		}
		o.enqueue(ctx, ev)
	}
	return t, nil
}

// enqueue queues the deliveries of a task event, if it has any, and wakes
// the deliverers. A failure is logged: the event itself still goes out.
func (o *Outbox) enqueue(ctx context.Context, ev event.Event) {
	p := enqueueParams(ev)
	if p == nil {
		return
	}
	n, err := o.Store.WebhookEnqueue(ctx, p)
	if err != nil {
		o.log.ErrorContext(ctx, "queue webhook deliveries failed", "task_id", ev.TaskID, "event", p.Type, "err", err)
		return
	}
	if n > 0 {
		if err := o.Store.Publish(ctx, event.Event{Type: EventQueued, Time: ev.Time}); err != nil {
			o.log.WarnContext(ctx, "publish webhook_queued failed", "err", err)
		}
	}
}

// enqueueParams maps a task event to its webhook event: task_status of a
// pending or running task, and the final events (which carry the result
// or error). Other events queue nothing.
func enqueueParams(ev event.Event) *store.WebhookEnqueueParams {
	if ev.TaskID == "" {
		return nil
	}
	var status string
	switch ev.Type {
	case event.TypeTaskStatus:
		var d event.TaskStatusData
		if json.Unmarshal(ev.Data, &d) != nil || (d.Status != task.StatusPending && d.Status != task.StatusRunning) {
			return nil
		}
		status = string(d.Status) + "." + strconv.Itoa(d.Attempts)
	case event.TypeTaskCompleted:
		status = string(task.StatusCompleted)
	case event.TypeTaskFailed:
		status = string(task.StatusFailed)
	case event.TypeTaskCancelled:
		status = string(task.StatusCancelled)
	default:
		return nil
	}
	typ, _, _ := strings.Cut(status, ".")
	data := map[string]json.RawMessage{}
	if json.Unmarshal(ev.Data, &data) != nil {
		return nil
	}
	data["status"], _ = json.Marshal(typ)
	raw, _ := json.Marshal(data)
	now := time.UnixMilli(ev.Time).UTC()
	if ev.Time == 0 {
		now = time.Now().UTC()
	}
	body, _ := json.Marshal(Payload{Type: "task." + typ, Timestamp: now.Format(time.RFC3339Nano), Data: raw})
	return &store.WebhookEnqueueParams{
		// The id is the same whichever replica or retry queues the event.
		EventID: "evt_" + ev.TaskID + "_" + status,
		Type:    "task." + typ, TaskID: ev.TaskID, Owner: ev.Owner, Payload: body, Now: now,
	}
}
