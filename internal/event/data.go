package event

import "github.com/comfyfleet/comfyfleet/internal/task"

// TaskStatusData is the data of task_status (and of the internal task_queued,
// with TaskID and Status only).
type TaskStatusData struct {
	TaskID     string      `json:"taskId"`
	Status     task.Status `json:"status"`
	InstanceID string      `json:"instanceId"`
	Progress   int         `json:"progress"`
	Attempts   int         `json:"attempts"`
}

// TaskProgressData is the data of task_progress: the percentage and where
// the run is. NodeID, ClassType and Title name the node running (Title is
// its _meta.title; empty fields are left out); Value of Max is its step
// counter, 0 of 0 for a node that reports none. Node repeats NodeID for
// clients of the first version.
type TaskProgressData struct {
	TaskID    string `json:"taskId"`
	Progress  int    `json:"progress"`
	NodeID    string `json:"nodeId,omitempty"`
	Node      string `json:"node,omitempty"`
	ClassType string `json:"classType,omitempty"`
	Title     string `json:"title,omitempty"`
	Value     int    `json:"value"`
	Max       int    `json:"max"`
}

// TaskCompletedData is the data of task_completed.
type TaskCompletedData struct {
	TaskID     string       `json:"taskId"`
	InstanceID string       `json:"instanceId"`
	Result     *task.Result `json:"result"`
}

// TaskFailedData is the data of task_failed.
type TaskFailedData struct {
	TaskID     string      `json:"taskId"`
	InstanceID string      `json:"instanceId"`
	Error      *task.Error `json:"error"`
}

// TaskCancelledData is the data of task_cancelled and of the internal
// task_cancel_requested.
type TaskCancelledData struct {
	TaskID     string `json:"taskId"`
	InstanceID string `json:"instanceId,omitempty"`
}

// TaskPreviewData is the data of task_preview.
type TaskPreviewData struct {
	TaskID string `json:"taskId"`
	NodeID string `json:"nodeId"`
	// Format is "jpeg" or "png".
	Format string `json:"format"`
	// Image is the image, base64-encoded (standard alphabet, padded).
	Image []byte `json:"image"`
}

// InstanceStatusData is the data of instance_status: the seed's fields plus
// enabled, the current task and why the gateway drained the instance.
type InstanceStatusData struct {
	InstanceID    string `json:"instanceId"`
	Alive         bool   `json:"alive"`
	Busy          bool   `json:"busy"`
	Enabled       bool   `json:"enabled"`
	CurrentTaskID string `json:"currentTaskId"`
	LastError     string `json:"lastError"`
	// DrainReason says why the instance is disabled, when the gateway said
	// (AutoDrained); "" otherwise.
	DrainReason string `json:"drainReason"`
	AutoDrained bool   `json:"autoDrained"`
}
