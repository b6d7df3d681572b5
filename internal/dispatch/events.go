package dispatch

import (
	"context"
	"encoding/json"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Event types. The task_* ones go to /ws clients; the internal ones
// coordinate replicas and never leave the gateway.
const (
	EventTaskStatus    = "task_status"
	EventTaskProgress  = "task_progress"
	EventTaskCompleted = "task_completed"
	EventTaskFailed    = "task_failed"
	EventTaskCancelled = "task_cancelled"

	// EventTaskQueued (internal) says a task became pending: idle instances should claim.
	EventTaskQueued = "task_queued"
	// EventCancelRequested (internal) asks the replica driving a task to interrupt it.
	EventCancelRequested = "task_cancel_requested"
)

// StatusData is the data of task_status.
type StatusData struct {
	TaskID     string      `json:"taskId"`
	Status     task.Status `json:"status"`
	InstanceID string      `json:"instanceId"`
	Progress   int         `json:"progress"`
	Attempts   int         `json:"attempts"`
}

// ProgressData is the data of task_progress: the percentage and where the
// run is. NodeID, ClassType and Title name the node running (Title is its
// _meta.title; empty fields are left out); Value of Max is its step counter,
// 0 of 0 for a node that reports none. Node repeats NodeID for clients of
// the first version.
type ProgressData struct {
	TaskID    string `json:"taskId"`
	Progress  int    `json:"progress"`
	NodeID    string `json:"nodeId,omitempty"`
	Node      string `json:"node,omitempty"`
	ClassType string `json:"classType,omitempty"`
	Title     string `json:"title,omitempty"`
	Value     int    `json:"value"`
	Max       int    `json:"max"`
}

// CompletedData is the data of task_completed.
type CompletedData struct {
	TaskID     string       `json:"taskId"`
	InstanceID string       `json:"instanceId"`
	Result     *task.Result `json:"result"`
}

// FailedData is the data of task_failed.
type FailedData struct {
	TaskID     string      `json:"taskId"`
	InstanceID string      `json:"instanceId"`
	Error      *task.Error `json:"error"`
}

// CancelledData is the data of task_cancelled and task_cancel_requested.
type CancelledData struct {
	TaskID     string `json:"taskId"`
	InstanceID string `json:"instanceId,omitempty"`
}

// Publish sends one task event for t. Errors are returned for the caller to log.
func Publish(ctx context.Context, ps store.PubSub, typ string, t *task.Task, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return ps.Publish(ctx, store.Event{
		Type: typ, Data: raw, TaskID: t.ID, Owner: t.Owner, Time: time.Now().UnixMilli(),
	})
}

// PublishStatus sends task_status for t's current status.
func PublishStatus(ctx context.Context, ps store.PubSub, t *task.Task) error {
	return Publish(ctx, ps, EventTaskStatus, t, StatusData{
		TaskID: t.ID, Status: t.Status, InstanceID: t.InstanceID, Progress: t.Progress, Attempts: t.Attempts,
	})
}

// PublishFinal sends task_status and the final event (completed, failed or
// cancelled) of a finished task.
func PublishFinal(ctx context.Context, ps store.PubSub, t *task.Task) error {
	if err := PublishStatus(ctx, ps, t); err != nil {
		return err
	}
	switch t.Status {
	case task.StatusCompleted:
		return Publish(ctx, ps, EventTaskCompleted, t, CompletedData{TaskID: t.ID, InstanceID: t.InstanceID, Result: t.Result})
	case task.StatusFailed:
		return Publish(ctx, ps, EventTaskFailed, t, FailedData{TaskID: t.ID, InstanceID: t.InstanceID, Error: t.Error})
	case task.StatusCancelled:
		return Publish(ctx, ps, EventTaskCancelled, t, CancelledData{TaskID: t.ID, InstanceID: t.InstanceID})
	}
	return nil
}
