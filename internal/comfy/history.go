package comfy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// History event names found in HistoryStatus.Messages (and on the WebSocket).
const (
	EventExecutionStart       = "execution_start"
	EventExecutionCached      = "execution_cached"
	EventExecutionSuccess     = "execution_success"
	EventExecutionError       = "execution_error"
	EventExecutionInterrupted = "execution_interrupted"
)

// HistoryEntry is a finished prompt as recorded by GET /history/{id}.
type HistoryEntry struct {
	// PromptID is the prompt's id.
	PromptID string
	// Outputs maps an output node id to its UI output. Only nodes that produced
	// UI output appear; a failed or interrupted run keeps what finished before.
	Outputs map[string]NodeOutput
	// Status says how the run ended.
	Status HistoryStatus
}

// HistoryStatus is the status object of a history entry.
type HistoryStatus struct {
	// StatusStr is "success" or "error" (an interrupted run is "error" too).
	StatusStr string `json:"status_str"`
	// Completed is true exactly when StatusStr is "success".
	Completed bool `json:"completed"`
	// Messages are the run's execution_* events in order.
	Messages []HistoryMessage `json:"messages"`
}

// HistoryMessage is one [event_name, data] pair of HistoryStatus.Messages.
type HistoryMessage struct {
	// Event is the event name, e.g. "execution_error".
	Event string
	// Data is the event's raw data object.
	Data json.RawMessage
}

// UnmarshalJSON reads the [name, data] pair. A value of another shape is kept
// whole in Data with an empty Event rather than failing the entry.
func (m *HistoryMessage) UnmarshalJSON(b []byte) error {
	var pair []json.RawMessage
	if json.Unmarshal(b, &pair) == nil && len(pair) == 2 && json.Unmarshal(pair[0], &m.Event) == nil {
		m.Data = pair[1]
		return nil
	}
	m.Event, m.Data = "", append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON writes the [name, data] pair.
func (m HistoryMessage) MarshalJSON() ([]byte, error) {
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	return json.Marshal([]any{m.Event, data})
}

// Succeeded reports whether the run ended with execution_success.
func (h *HistoryEntry) Succeeded() bool { return h.Status.StatusStr == "success" }

// Interrupted reports whether the run was interrupted. ComfyUI records an
// interrupted run as status "error"; only an execution_interrupted message
// tells it apart from a failure.
func (h *HistoryEntry) Interrupted() bool {
	return slices.ContainsFunc(h.Status.Messages, func(m HistoryMessage) bool {
		return m.Event == EventExecutionInterrupted
	})
}

// ErrorMessage returns the run's execution_error, if it has one.
func (h *HistoryEntry) ErrorMessage() (*ExecutionError, bool) {
	for _, m := range slices.Backward(h.Status.Messages) {
		if m.Event == EventExecutionError {
			var e ExecutionError
			_ = json.Unmarshal(m.Data, &e) // best effort: the message's presence is what matters
			return &e, true
		}
	}
	return nil, false
}

// RunTime is how long the instance ran the prompt: from its
// execution_start to its execution_success, by the timestamps ComfyUI put
// on them (its own clock, in ms). False when either is missing.
func (h *HistoryEntry) RunTime() (time.Duration, bool) {
	var start, end int64
	for _, m := range h.Status.Messages {
		switch m.Event {
		case EventExecutionStart:
			start, _ = Stamp(m.Data)
		case EventExecutionSuccess:
			end, _ = Stamp(m.Data)
		}
	}
	return Elapsed(start, end)
}

// Stamp reads the timestamp (Unix ms, the instance's clock) of an
// execution_* event's data.
func Stamp(data json.RawMessage) (int64, bool) {
	var d struct {
		Timestamp *int64 `json:"timestamp"`
	}
	if json.Unmarshal(data, &d) != nil || d.Timestamp == nil || *d.Timestamp <= 0 {
		return 0, false
	}
	return *d.Timestamp, true
}

// Elapsed is the time between two stamps of one instance; false unless
// both are set and in order.
func Elapsed(start, end int64) (time.Duration, bool) {
	if start <= 0 || end < start {
		return 0, false
	}
	return time.Duration(end-start) * time.Millisecond, true
}

// ExecutionError is the data of an execution_error event: a node raised
// while the prompt ran.
type ExecutionError struct {
	PromptID         string   `json:"prompt_id"`
	NodeID           string   `json:"node_id"`
	NodeType         string   `json:"node_type"`
	Executed         []string `json:"executed"`
	ExceptionMessage string   `json:"exception_message"`
	ExceptionType    string   `json:"exception_type"`
	Traceback        []string `json:"traceback"`
	// Timestamp is in Unix milliseconds.
	Timestamp int64 `json:"timestamp"`
}

// UnmarshalJSON decodes the event data, tolerating a fractional timestamp.
func (e *ExecutionError) UnmarshalJSON(b []byte) error {
	type plain ExecutionError
	w := struct {
		*plain
		Timestamp flexInt `json:"timestamp"`
	}{plain: (*plain)(e)}
	err := json.Unmarshal(b, &w) // on a type error the other fields are still decoded
	e.Timestamp = int64(w.Timestamp)
	return err
}

// Error describes the failure in one line.
func (e *ExecutionError) Error() string {
	msg := strings.TrimSpace(e.ExceptionMessage)
	return fmt.Sprintf("node %s (%s) failed: %s: %s", e.NodeID, e.NodeType, e.ExceptionType, msg)
}

// NodeOutput is one node's raw UI output, e.g. {"images": [{filename, subfolder, type}]}.
type NodeOutput map[string]json.RawMessage

// FileRef names a file on a ComfyUI instance, as found in a node's output.
type FileRef struct {
	// Kind is the output key the file was listed under: "images", "gifs",
	// "audio", "video", ...
	Kind string
	// Filename is the file's base name.
	Filename string
	// Subfolder is relative to the type's base directory; "" for its root.
	Subfolder string
	// Type is "output", "temp" or "input" ("" means ComfyUI's default, output).
	Type string
}

// Files returns every file listed in the output: the entries of any
// list-valued key (images, gifs, audio, video, ...) that are objects with a
// non-empty string filename. Other lists, such as "text" strings or
// "animated" booleans, are skipped. Keys are visited in sorted order.
func (o NodeOutput) Files() []FileRef {
	var files []FileRef
	for _, kind := range slices.Sorted(maps.Keys(o)) {
		if kind == "text" {
			continue
		}
		var items []json.RawMessage
		if json.Unmarshal(o[kind], &items) != nil {
			continue
		}
		for _, item := range items {
			if f, ok := parseFileItem(kind, item); ok {
				files = append(files, f)
			}
		}
	}
	return files
}

// parseFileItem reads {"filename", "subfolder"?, "type"?}; anything else is not a file.
func parseFileItem(kind string, item json.RawMessage) (FileRef, bool) {
	var w struct {
		Filename  any `json:"filename"`
		Subfolder any `json:"subfolder"`
		Type      any `json:"type"`
	}
	if json.Unmarshal(item, &w) != nil {
		return FileRef{}, false
	}
	name, ok := w.Filename.(string)
	if !ok || name == "" {
		return FileRef{}, false
	}
	sub, _ := w.Subfolder.(string)
	typ, _ := w.Type.(string)
	return FileRef{Kind: kind, Filename: name, Subfolder: sub, Type: typ}, true
}

type historyWire struct {
	Outputs map[string]NodeOutput `json:"outputs"`
	Status  HistoryStatus         `json:"status"`
}

// History reads GET /history/{promptID}. It returns an error wrapping
// ErrNotInHistory when ComfyUI answers {} (unknown, pending, running or
// deleted prompt). The history is written after execution_success is sent, so
// fetch it after the final executing{node: null} event, or retry.
func (c *Client) History(ctx context.Context, promptID string) (*HistoryEntry, error) {
	var m map[string]json.RawMessage
	if err := c.call(ctx, "history", http.MethodGet, "/history/"+url.PathEscape(promptID), nil, &m); err != nil {
		return nil, err
	}
	raw, ok := m[promptID]
	if !ok {
		if len(m) == 0 {
			return nil, fmt.Errorf("comfy: history %s: %w", promptID, ErrNotInHistory)
		}
		return nil, fmt.Errorf("comfy: history %s: answer has %d other entries", promptID, len(m))
	}
	var w historyWire
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("comfy: history %s: %w", promptID, err)
	}
	return &HistoryEntry{PromptID: promptID, Outputs: w.Outputs, Status: w.Status}, nil
}
