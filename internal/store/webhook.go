package store

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// WebhookStore keeps webhook subscriptions and the durable queue of their
// deliveries. A subscription belongs to an owner and covers either all of
// the owner's tasks (TaskID "") or one task (the task's own webhook). An
// event of a task becomes one delivery per matching subscription, keyed by
// subscription and event id, so enqueueing an event twice (a retry, or two
// replicas) adds nothing. Deliveries are claimed under a lease
// (WebhookClaim) by one replica at a time, and their attempts are recorded
// with their outcome (WebhookRecord).
//
// A store queues the deliveries of the task events it logs itself, in the
// same atomic step that logs them (TaskInsert, TaskInsertClaim, TaskClaim,
// TaskRequeue, TaskRequestCancel, TaskFinish, Publish): each logged event
// that WebhookEventOf maps to a webhook event gets one delivery per
// matching subscription, as WebhookEnqueue adds them, and when any was
// added the step also logs and publishes one event.TypeWebhookQueued,
// which wakes the deliverers. A step that is refused queues nothing; an
// event nobody subscribed to costs no write and no extra round trip.
type WebhookStore interface {
	// WebhookSubInsert adds a subscription; a duplicate id is ErrConflict.
	WebhookSubInsert(ctx context.Context, sub *WebhookSub) error
	// WebhookSubGet returns one subscription; ErrNotFound if none has that id.
	WebhookSubGet(ctx context.Context, id string) (*WebhookSub, error)
	// WebhookSubList returns the subscriptions for all tasks of p.Owner (of
	// every owner when empty), oldest first; per-task subscriptions are
	// not listed.
	WebhookSubList(ctx context.Context, p *WebhookSubListParams) ([]*WebhookSub, error)
	// WebhookSubDelete removes a subscription; ErrNotFound if there is none.
	// Its deliveries already queued are still made.
	WebhookSubDelete(ctx context.Context, id string) error
	// WebhookEnqueue adds one pending delivery of the event per
	// subscription that matches it (the task's own, and the owner's for all
	// tasks, whose Events are empty or contain p.Type), due at once, and
	// returns how many it added. A delivery of the same subscription and
	// event id that exists already is left as it is and not counted. It
	// publishes nothing: the deliveries of the task events a store logs are
	// queued by the store itself, in the step that logs them (see
	// WebhookEventOf), which also wakes the deliverers.
	WebhookEnqueue(ctx context.Context, p *WebhookEnqueueParams) (int, error)
	// WebhookClaim takes up to p.Limit pending deliveries due at p.Now
	// (NextAt <= Now, soonest first) for p.Holder: each is held until
	// Now+LeaseTTL, when it is due again if its holder has not recorded it.
	WebhookClaim(ctx context.Context, p *WebhookClaimParams) ([]*WebhookDelivery, error)
	// WebhookRecord records an attempt of a delivery held by p.Holder: its
	// new state, log and, if still pending, when it is due again; the lease
	// ends. ErrConflict if the delivery is not pending or not held by
	// p.Holder (its lease expired and another took it); ErrNotFound if none
	// has that id.
	WebhookRecord(ctx context.Context, p *WebhookRecordParams) (*WebhookDelivery, error)
	// WebhookDeliveries returns a task's deliveries, oldest first.
	WebhookDeliveries(ctx context.Context, taskID string) ([]*WebhookDelivery, error)
	// WebhookNextDue returns when the next pending delivery is due (its
	// lease's end if held); ok is false when none is pending.
	WebhookNextDue(ctx context.Context) (next time.Time, ok bool, err error)
}

// WebhookSub is a webhook subscription.
type WebhookSub struct {
	ID    string
	Owner string
	// TaskID, when set, limits the subscription to that task.
	TaskID string
	URL    string
	// Secret signs the deliveries ("whsec_" and base64).
	Secret string
	// Events are the event types delivered; empty for all.
	Events    []string
	CreatedAt time.Time
}

// Matches reports whether the subscription wants events of type typ.
func (s *WebhookSub) Matches(typ string) bool {
	return len(s.Events) == 0 || slices.Contains(s.Events, typ)
}

// WebhookSubListParams filters WebhookSubList.
type WebhookSubListParams struct {
	Owner string // empty: every owner
}

// WebhookEnqueueParams is one event to deliver.
type WebhookEnqueueParams struct {
	// EventID is the same for every enqueue of one event (the webhook-id).
	EventID string
	Type    string
	TaskID  string
	Owner   string
	// Payload is the request body.
	Payload []byte
	Now     time.Time
}

// WebhookEventOf maps a logged task event to the webhook event its
// deliveries carry: the task_status of a task that became pending or
// running (task.pending, task.running; one webhook event per attempt),
// and task_completed, task_failed and task_cancelled (task.completed,
// task.failed, task.cancelled). ok is false for every other event, which
// has no deliveries.
//
// The event id (the webhook-id) is "evt_", the task id, "_" and the status
// (with "." and the attempts for pending and running), the same whichever
// replica or retry queues it. The payload is
//
//	{"type":"task.<status>","timestamp":"<ev.Time, RFC 3339>","data":<data>}
//
// where data is ev.Data byte for byte, with ,"status":"<status>" added at
// its end for the final events (task_status has it already). The Redis
// store's scripts build the same bytes for the events they build
// themselves.
func WebhookEventOf(ev event.Event) (p WebhookEnqueueParams, ok bool) {
	if ev.TaskID == "" {
		return p, false
	}
	data := bytes.TrimSpace(ev.Data)
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return p, false
	}
	var status, id string
	switch ev.Type {
	case event.TypeTaskStatus:
		var d struct {
			Status   task.Status `json:"status"`
			Attempts int         `json:"attempts"`
		}
		if json.Unmarshal(data, &d) != nil || (d.Status != task.StatusPending && d.Status != task.StatusRunning) {
			return p, false
		}
		status, id = string(d.Status), string(d.Status)+"."+strconv.Itoa(d.Attempts)
	case event.TypeTaskCompleted:
		status = string(task.StatusCompleted)
	case event.TypeTaskFailed:
		status = string(task.StatusFailed)
	case event.TypeTaskCancelled:
		status = string(task.StatusCancelled)
	default:
		return p, false
	}
	if id == "" {
		id = status
		if !json.Valid(data) {
			return p, false
		}
	}
	at := time.UnixMilli(ev.Time).UTC()
	if ev.Time == 0 {
		at = time.Now().UTC().Truncate(time.Millisecond)
	}
	typ := "task." + status
	body := make([]byte, 0, len(data)+96)
	body = append(body, `{"type":"`...)
	body = append(body, typ...)
	body = append(body, `","timestamp":"`...)
	body = append(body, WebhookTimestamp(at)...)
	body = append(body, `","data":`...)
	if ev.Type == event.TypeTaskStatus {
		body = append(body, data...)
	} else {
		body = append(body, data[:len(data)-1]...)
		if len(bytes.TrimSpace(data[1:len(data)-1])) > 0 {
			body = append(body, ',')
		}
		body = append(body, `"status":"`...)
		body = append(body, status...)
		body = append(body, `"}`...)
	}
	body = append(body, '}')
	return WebhookEnqueueParams{
		EventID: "evt_" + ev.TaskID + "_" + id, Type: typ, TaskID: ev.TaskID, Owner: ev.Owner, Payload: body, Now: at,
	}, true
}

// WebhookTimestamp is the timestamp of a webhook payload: t in UTC, RFC
// 3339 with the fraction of a second it has (none when whole).
func WebhookTimestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	// DeliveryFailed: given up (the receiver never answered 2xx within the
	// retry time, or answered a status that is not retried).
	DeliveryFailed = "failed"
)

// MaxWebhookLog bounds a delivery's log: the newest attempts are kept.
const MaxWebhookLog = 20

// WebhookDelivery is one event sent to one subscription.
type WebhookDelivery struct {
	// ID is SubID + "." + EventID.
	ID      string
	SubID   string
	EventID string
	Type    string
	TaskID  string
	Owner   string
	URL     string
	Secret  string
	Payload []byte
	State   string
	// Attempts counts every attempt made, also those the log dropped.
	Attempts int
	// Log holds the newest attempts, oldest first.
	Log       []WebhookAttempt
	CreatedAt time.Time
	// NextAt is when a pending delivery is due (its lease's end while held).
	NextAt    time.Time
	UpdatedAt time.Time
}

// WebhookAttempt is one try of a delivery.
type WebhookAttempt struct {
	At time.Time `json:"at"`
	// Status is the receiver's HTTP status, 0 when there was no answer.
	Status int `json:"status"`
	// Error says why the attempt failed ("" when it succeeded).
	Error    string `json:"error,omitempty"`
	Duration int64  `json:"durationMs"`
}

// WebhookClaimParams says who claims deliveries.
type WebhookClaimParams struct {
	Holder   string
	Limit    int
	LeaseTTL time.Duration
	Now      time.Time
}

// WebhookRecordParams is the outcome of an attempt.
type WebhookRecordParams struct {
	ID     string
	Holder string
	// State is DeliveryPending (retry at NextAt), DeliveryDelivered or DeliveryFailed.
	State  string
	NextAt time.Time
	// Log replaces the delivery's log; the store keeps its newest MaxWebhookLog entries.
	Log []WebhookAttempt
	Now time.Time
}

// TrimWebhookLog keeps the newest MaxWebhookLog attempts of log.
func TrimWebhookLog(log []WebhookAttempt) []WebhookAttempt {
	if len(log) > MaxWebhookLog {
		return log[len(log)-MaxWebhookLog:]
	}
	return log
}
