package comfy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrNotFound is matched (with errors.Is) by an *HTTPError whose status is 404,
// for example View of a file that does not exist.
var ErrNotFound = errors.New("comfy: not found")

// ErrNotInHistory is returned by History when ComfyUI answers {}: the prompt is
// unknown, still queued, still running, was deleted from the queue, or its
// history entry was removed or evicted.
var ErrNotInHistory = errors.New("comfy: prompt not in history")

// ErrMalformedFrame is wrapped by the error Conn.Next returns for a WebSocket
// frame it cannot decode. The connection stays usable; call Next again.
var ErrMalformedFrame = errors.New("comfy: malformed WebSocket frame")

// maxErrorBody bounds how much of a failed response's body is kept in an HTTPError.
const maxErrorBody = 4 << 10

// HTTPError is an unexpected HTTP status from ComfyUI.
type HTTPError struct {
	// Status is the HTTP status code.
	Status int
	// Body is the start of the response body (at most 4 KiB), e.g. aiohttp's
	// "500 Internal Server Error\n\nServer got itself in trouble".
	Body string
}

// Error reports the status and the start of the body.
func (e *HTTPError) Error() string {
	body := strings.TrimSpace(e.Body)
	if body == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, body)
}

// Is makes errors.Is(err, ErrNotFound) hold for a 404.
func (e *HTTPError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// PromptError is ComfyUI's 400 answer to POST /prompt: the prompt failed
// validation and was not queued.
type PromptError struct {
	// Type is error.type, e.g. "prompt_outputs_failed_validation",
	// "prompt_no_outputs", "invalid_prompt" (v0.3.x) or "missing_node_type" (v0.12+).
	Type string
	// Message is error.message.
	Message string
	// Details is error.details; empty when the fault is upstream of the output
	// nodes, so read NodeErrors too.
	Details string
	// ExtraInfo is the raw error.extra_info object.
	ExtraInfo json.RawMessage
	// NodeErrors is the raw node_errors object, {} when there are none.
	NodeErrors json.RawMessage
}

// Error summarises the rejection in one line.
func (e *PromptError) Error() string {
	var b strings.Builder
	b.WriteString("prompt rejected: ")
	b.WriteString(e.Type)
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Details != "" {
		b.WriteString(": " + e.Details)
	}
	return b.String()
}

// NodeError is one entry of a node_errors object.
type NodeError struct {
	// ClassType is the node's class_type.
	ClassType string `json:"class_type"`
	// Errors lists what is wrong with the node's inputs.
	Errors []InputError `json:"errors"`
	// DependentOutputs lists the output node ids that depend on this node.
	DependentOutputs []string `json:"dependent_outputs"`
}

// InputError is one error of a node in node_errors.
type InputError struct {
	// Type is e.g. "required_input_missing" or "value_not_in_list".
	Type string `json:"type"`
	// Message is the human-readable kind of error.
	Message string `json:"message"`
	// Details names the input and the offending value.
	Details string `json:"details"`
	// ExtraInfo is the raw extra_info object.
	ExtraInfo json.RawMessage `json:"extra_info,omitempty"`
}

// Nodes decodes NodeErrors, keyed by node id.
func (e *PromptError) Nodes() (map[string]NodeError, error) {
	return decodeNodeErrors(e.NodeErrors)
}

func decodeNodeErrors(raw json.RawMessage) (map[string]NodeError, error) {
	var m map[string]NodeError
	if len(raw) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("comfy: decode node_errors: %w", err)
	}
	return m, nil
}

// emptyObject normalises an absent or null JSON value to {}.
func emptyObject(raw json.RawMessage) json.RawMessage {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return json.RawMessage(`{}`)
	}
	return raw
}
