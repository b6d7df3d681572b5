// Package event is the one home of the gateway's events: the message that
// travels the store's event channel between the components of every
// replica, the names of its types (the /ws message names, plus internal
// ones that never leave the gateway), the data of each type, and the
// helpers that build and publish them.
//
// It imports only the domain packages (task, instance), so the store, the
// dispatcher, the fleet, the API and the push hub all depend on it and on
// nothing of each other's to publish or read an event.
//
// Sequence. The events that report state changes (Logged) are numbered by
// the store as it logs them: Event.Seq, 1 and up, one sequence for the whole
// deployment (every replica of a Redis store shares it), in the order the
// store logged them. A consumer that must not miss any (a /ws client, a
// webhook sender) keeps the Seq of the last event it handled and reads on
// from there with the store's EventsAfter, which says ErrEventsGone when
// the log no longer reaches back that far; store.PubSub documents the read
// loop. Transient events (task_progress, task_preview) have Seq 0 and are
// only ever delivered live.
package event

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Event is one message on the event channel. Type is one of the Type*
// names; Data is the message's data object, one of the *Data types of this
// package encoded as JSON.
type Event struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	// TaskID and Owner let the push hub route task events without decoding Data.
	TaskID string `json:"taskId,omitempty"`
	Owner  string `json:"owner,omitempty"`
	// Time is the Unix ms timestamp of the event.
	Time int64 `json:"time"`
	// Seq is the event's number in the store's event log, 1 and up in the
	// order the store logged them; 0 for a transient event (Logged).
	Seq int64 `json:"seq,omitempty"`
}

// Logged reports whether events of type typ report a state change and so
// are kept, numbered, in the store's event log: every type but
// task_progress and task_preview, which come many times a run, each
// superseding the last (the task's progress is in the store; previews are
// never stored).
func Logged(typ string) bool {
	return typ != TypeTaskProgress && typ != TypeTaskPreview
}

// Publisher sends events to every subscriber of every replica. The store
// is one (store.PubSub). The logged events among several given at once
// go out in one step of the store, in their order; transient ones at once.
type Publisher interface {
	Publish(ctx context.Context, evs ...Event) error
}

// Types that /ws clients receive.
const (
	TypeTaskStatus    = "task_status"
	TypeTaskProgress  = "task_progress"
	TypeTaskCompleted = "task_completed"
	TypeTaskFailed    = "task_failed"
	TypeTaskCancelled = "task_cancelled"
	// TypeTaskPreview carries the latest live preview of a running task (a
	// sampler's step image). Previews are never stored, and the push hub
	// may skip them for a client that is behind.
	TypeTaskPreview    = "task_preview"
	TypeInstanceStatus = "instance_status"
)

// Internal types: they coordinate replicas and never reach a client.
const (
	// TypeTaskQueued says a task became pending: idle instances should claim.
	TypeTaskQueued = "task_queued"
	// TypeTaskCancelRequested asks the replica driving a task to interrupt it.
	TypeTaskCancelRequested = "task_cancel_requested"
	// TypeKeyRevoked says an API key was revoked: every replica closes the
	// /ws sessions opened with it. Data is KeyRevokedData.
	TypeKeyRevoked = "key_revoked"
	// TypeCatalogChanged says an instance's node catalogue changed: every
	// replica reads the catalogue hashes it keeps for admission again.
	// Data is CatalogChangedData.
	TypeCatalogChanged = "catalog_changed"
	// TypeWebhookQueued says webhook deliveries were queued: the deliverers
	// of every replica claim. The store logs it in the step that queued
	// them; it has no task, owner or data.
	TypeWebhookQueued = "webhook_queued"
)

// CatalogChangedData is the data of catalog_changed.
type CatalogChangedData struct {
	InstanceID string `json:"instanceId"`
}

// CatalogChanged builds the catalog_changed event of instance id.
func CatalogChanged(id string) (Event, error) {
	raw, err := json.Marshal(CatalogChangedData{InstanceID: id})
	if err != nil {
		return Event{}, fmt.Errorf("event: encode %s: %w", TypeCatalogChanged, err)
	}
	return Event{Type: TypeCatalogChanged, Data: raw, Time: time.Now().UnixMilli()}, nil
}

// KeyRevokedData is the data of key_revoked.
type KeyRevokedData struct {
	KeyID string `json:"keyId"`
}

// Audience says who may receive an event.
type Audience int

const (
	// Internal events are for the gateway only.
	Internal Audience = iota
	// Everyone receives instance events; the current task's id goes to
	// admins and the task's owner only.
	Everyone
	// TaskOwner events go to admins and the task's owner.
	TaskOwner
)

// AudienceOf classifies an event type. Only the client types above reach
// clients; any other type is internal.
func AudienceOf(typ string) Audience {
	switch typ {
	case TypeInstanceStatus:
		return Everyone
	case TypeTaskStatus, TypeTaskProgress, TypeTaskCompleted, TypeTaskFailed, TypeTaskCancelled, TypeTaskPreview:
		return TaskOwner
	}
	return Internal
}

// New builds a task event of type typ for t with data encoded as JSON,
// stamped now.
func New(typ string, t *task.Task, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("event: encode %s: %w", typ, err)
	}
	return Event{Type: typ, Data: raw, TaskID: t.ID, Owner: t.Owner, Time: time.Now().UnixMilli()}, nil
}

// Publish sends one task event for t. Errors are returned for the caller to log.
func Publish(ctx context.Context, p Publisher, typ string, t *task.Task, data any) error {
	ev, err := New(typ, t, data)
	if err != nil {
		return err
	}
	return p.Publish(ctx, ev)
}

// Pending builds the events of t becoming pending: its task_status and
// the internal task_queued.
func Pending(t *task.Task) ([]Event, error) {
	status, err := New(TypeTaskStatus, t, StatusOf(t))
	if err != nil {
		return nil, err
	}
	queued, err := New(TypeTaskQueued, t, TaskStatusData{TaskID: t.ID, Status: t.Status})
	if err != nil {
		return nil, err
	}
	return []Event{status, queued}, nil
}

// PublishQueued sends the internal task_queued for t, which just became pending.
func PublishQueued(ctx context.Context, p Publisher, t *task.Task) error {
	return Publish(ctx, p, TypeTaskQueued, t, TaskStatusData{TaskID: t.ID, Status: t.Status})
}

// Cancel builds the events of a cancel: a cancelled task's final events,
// or the task_cancel_requested of a running one.
func Cancel(t *task.Task) ([]Event, error) {
	if t.Status.Final() {
		return Final(t)
	}
	ev, err := New(TypeTaskCancelRequested, t, TaskCancelledData{TaskID: t.ID, InstanceID: t.InstanceID})
	if err != nil {
		return nil, err
	}
	return []Event{ev}, nil
}

// Final builds the events of a task that just finished: task_status, then
// task_completed, task_failed or task_cancelled (task_status alone for a
// task that has not finished). The stores log them in the step that
// finishes the task (store.TaskStore.TaskFinish).
func Final(t *task.Task) ([]Event, error) {
	st, err := New(TypeTaskStatus, t, StatusOf(t))
	if err != nil {
		return nil, err
	}
	typ, data, ok := FinalOf(t)
	if !ok {
		return []Event{st}, nil
	}
	final, err := New(typ, t, data)
	if err != nil {
		return nil, err
	}
	return []Event{st, final}, nil
}

// StatusOf is the data of task_status for t's current status.
func StatusOf(t *task.Task) TaskStatusData {
	return TaskStatusData{
		TaskID: t.ID, Status: t.Status, InstanceID: t.InstanceID, Progress: t.Progress, Attempts: t.Attempts,
	}
}

// FinalOf is the type and data of the final event of a finished task; ok
// is false for a task that has not finished.
func FinalOf(t *task.Task) (typ string, data any, ok bool) {
	switch t.Status {
	case task.StatusCompleted:
		return TypeTaskCompleted, TaskCompletedData{TaskID: t.ID, InstanceID: t.InstanceID, Result: t.Result}, true
	case task.StatusFailed:
		return TypeTaskFailed, TaskFailedData{TaskID: t.ID, InstanceID: t.InstanceID, Error: t.Error}, true
	case task.StatusCancelled:
		return TypeTaskCancelled, TaskCancelledData{TaskID: t.ID, InstanceID: t.InstanceID}, true
	}
	return "", nil, false
}

// Instance builds instance_status for st. owner is the owner of st's
// current task ("" when none or unknown): the push hub shows the task's id
// to that user and admins only.
func Instance(st instance.State, owner string) Event {
	raw, _ := json.Marshal(InstanceStatusOf(st)) // plain fields: cannot fail
	return Event{Type: TypeInstanceStatus, Data: raw, Owner: owner, Time: time.Now().UnixMilli()}
}

// InstanceStatusOf is the data of instance_status for st.
func InstanceStatusOf(st instance.State) InstanceStatusData {
	return InstanceStatusData{
		InstanceID: st.ID, Alive: st.Alive, Busy: st.Busy, Enabled: st.Enabled,
		CurrentTaskID: st.CurrentTaskID, LastError: st.LastError,
		DrainReason: st.DrainReason, AutoDrained: st.AutoDrained,
	}
}
