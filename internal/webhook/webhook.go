package webhook

import "github.com/comfyfleet/comfyfleet/internal/event"

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

// EventQueued is the internal event the store publishes after it queued
// deliveries, in the same step: it wakes the deliverers of every replica.
// The store queues the deliveries of the task events it logs itself
// (store.WebhookEventOf builds them).
const EventQueued = event.TypeWebhookQueued
