// Package task holds the task domain: a workflow run submitted through the
// gateway, its status, the transitions between statuses and its result.
package task

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Status is where a task is in its life. See docs/task-states.md.
type Status string

// The five statuses of the contract.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// AllStatuses lists every status in life-cycle order.
var AllStatuses = []Status{StatusPending, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled}

// Valid reports whether s is one of the five known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Final reports whether s is a terminal status that never changes again.
func (s Status) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// CanMove reports whether a task may move from one status to another.
// pending -> running | cancelled | failed; running -> pending (requeue after a
// lost instance) | completed | failed | cancelled. Terminal statuses never move.
func CanMove(from, to Status) bool {
	switch from {
	case StatusPending:
		return to == StatusRunning || to == StatusCancelled || to == StatusFailed
	case StatusRunning:
		return to == StatusPending || to == StatusCompleted || to == StatusFailed || to == StatusCancelled
	}
	return false
}

// Error types carried in Error.Type besides ComfyUI's own validation types.
const (
	ErrorTypeExecution    = "execution_error"    // a node raised while running
	ErrorTypeTimeout      = "timeout"            // ran past its timeout and was interrupted
	ErrorTypeInstanceLost = "instance_lost"      // attempts exhausted after losing instances
	ErrorTypeInterrupted  = "interrupted"        // interrupted on the instance by someone else
	ErrorTypeUpload       = "upload_failed"      // an input file could not be sent to the instance
	ErrorTypeOutput       = "output_failed"      // an output file could not be collected
	ErrorTypeHistory      = "history_unreadable" // the instance answers the prompt's history with an error or garbage
	// ErrorTypeOutputLost: images streamed over the WebSocket (SaveImageWebsocket)
	// may have been missed while the gateway was not connected; ComfyUI keeps no copy.
	ErrorTypeOutputLost = "output_lost"
)

// Task is one workflow run. Times are UTC; a zero time means "not yet".
type Task struct {
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Status Status `json:"status"`
	// Priority: higher runs first, with aging (see store.Rank); FIFO (Seq)
	// within a priority.
	Priority int `json:"priority"`
	// Progress is 0..100, never goes down, 100 only when completed.
	Progress   int    `json:"progress"`
	InstanceID string `json:"instanceId"`
	Attempts   int    `json:"attempts"`
	// Seq is the store-assigned insertion order, used for FIFO within a priority.
	Seq int64 `json:"-"`
	// Workflow is the API-format prompt as submitted (params not applied).
	Workflow json.RawMessage `json:"workflow,omitempty"`
	// Params are the overrides as submitted.
	Params json.RawMessage `json:"params,omitempty"`
	// Checkpoints names the model files the workflow loads, for warm-model placement.
	Checkpoints []string `json:"-"`
	// Requires are the labels an instance must have to run the task (all
	// of them, with these values); nil for any instance.
	Requires map[string]string `json:"requires,omitempty"`
	// CapKey names the task's placement requirement (store.CapStore); ""
	// for a task any instance may run.
	CapKey string `json:"-"`
	// Timeout overrides the configured run timeout when non-zero.
	Timeout time.Duration `json:"-"`
	// CancelRequested is set when a running task was asked to stop.
	CancelRequested bool `json:"-"`
	// Pinned keeps the finished task, and its output files, from retention.
	Pinned bool `json:"pinned"`
	// LeaseOwner is the gateway replica driving the run; LeaseExpiresAt bounds it.
	LeaseOwner     string    `json:"-"`
	LeaseExpiresAt time.Time `json:"-"`

	Result *Result `json:"result,omitempty"`
	Error  *Error  `json:"error,omitempty"`

	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
}

// Result lists the output files of a completed task.
type Result struct {
	Files   []string            `json:"files"`
	Outputs map[string][]Output `json:"outputs"`
}

// Output is one file produced by an output node and copied to the file store.
type Output struct {
	URL      string `json:"url"`
	Filename string `json:"filename"`
	// Type is where ComfyUI kept the file: "output" (SaveImage and the
	// like) or "temp" (previews, which ComfyUI deletes on restart).
	Type string `json:"type"`
	// Kind is the key ComfyUI listed the file under: images, gifs, video, audio...
	Kind   string `json:"kind,omitempty"`
	NodeID string `json:"nodeId"`
	FileID string `json:"fileId"`
}

// WithURLs returns a copy of r whose file URLs are made anew by url from
// each output's file id and name, in Outputs and in Files alike. A result
// keeps the URLs of the replica that collected it; rendering them from the
// file id when read makes them name the gateway that answers, so no URL
// names a replica that is gone. An output without a file id keeps its URL;
// r itself is not changed (it may be shared).
func (r *Result) WithURLs(url func(fileID, filename string) string) *Result {
	if r == nil {
		return nil
	}
	out := &Result{Files: make([]string, len(r.Files)), Outputs: make(map[string][]Output, len(r.Outputs))}
	renamed := make(map[string]string, len(r.Files))
	for node, outs := range r.Outputs {
		cp := make([]Output, len(outs))
		for i, o := range outs {
			if o.FileID != "" {
				u := url(o.FileID, o.Filename)
				renamed[o.URL] = u
				o.URL = u
			}
			cp[i] = o
		}
		out.Outputs[node] = cp
	}
	for i, f := range r.Files {
		if u, ok := renamed[f]; ok {
			f = u
		}
		out.Files[i] = f
	}
	return out
}

// Error says why a task failed or stopped.
type Error struct {
	Type     string `json:"type"`
	Message  string `json:"message"`
	NodeID   string `json:"nodeId,omitempty"`
	NodeType string `json:"nodeType,omitempty"`
	// NodeErrors is ComfyUI's node_errors object, kept as ComfyUI sent it.
	NodeErrors json.RawMessage `json:"nodeErrors,omitempty"`
	// ExceptionType is the Python exception a node raised (execution_error's
	// exception_type), e.g. "RuntimeError".
	ExceptionType string `json:"exceptionType,omitempty"`
	// Traceback is the exception's traceback as ComfyUI sent it, its frames
	// joined, most recent call last; at most MaxTraceback bytes.
	Traceback string `json:"traceback,omitempty"`
}

// MaxTraceback bounds Error.Traceback, in bytes. A longer traceback keeps
// its end, where the frame that raised is.
const MaxTraceback = 64 << 10

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// CheckpointKey names the set of model files a task loads, for warm-model
// placement: the distinct names, sorted, joined by "|". Empty for none.
func CheckpointKey(checkpoints []string) string {
	switch len(checkpoints) {
	case 0:
		return ""
	case 1:
		return checkpoints[0]
	}
	c := slices.Clone(checkpoints)
	slices.Sort(c)
	return strings.Join(slices.Compact(c), "|")
}
