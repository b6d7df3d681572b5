package comfy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
)

// SubmitParams is what Submit sends to POST /prompt.
type SubmitParams struct {
	// Prompt is the API-format workflow: {"<node id>": {"class_type", "inputs"}}. Required.
	Prompt json.RawMessage
	// PromptID is sent as prompt_id when not empty. ComfyUI v0.25+ accepts only a
	// canonical lowercase hyphenated UUID; older servers take anything.
	PromptID string
	// ExtraData is sent as extra_data when not empty (e.g. extra_pnginfo).
	// ComfyUI adds client_id to it itself.
	ExtraData map[string]any
	// Front asks ComfyUI to run the prompt before the ones already pending.
	Front bool
}

// SubmitResult is ComfyUI's 200 answer to POST /prompt.
type SubmitResult struct {
	// PromptID is the queued prompt's id (ours when PromptID was given).
	PromptID string
	// Number is the prompt's queue priority (lower runs first).
	Number float64
	// NodeErrors is the raw node_errors object, {} when empty. It can be
	// non-empty on success: outputs that failed validation were dropped and
	// the rest was queued.
	NodeErrors json.RawMessage
}

type submitBody struct {
	Prompt    json.RawMessage `json:"prompt"`
	ClientID  string          `json:"client_id"`
	PromptID  string          `json:"prompt_id,omitempty"`
	ExtraData map[string]any  `json:"extra_data,omitempty"`
	Front     bool            `json:"front,omitempty"`
}

type submitResponse struct {
	PromptID   string          `json:"prompt_id"`
	Number     float64         `json:"number"`
	NodeErrors json.RawMessage `json:"node_errors"`
}

type promptErrorBody struct {
	Error *struct {
		Type      string          `json:"type"`
		Message   string          `json:"message"`
		Details   string          `json:"details"`
		ExtraInfo json.RawMessage `json:"extra_info"`
	} `json:"error"`
	NodeErrors json.RawMessage `json:"node_errors"`
}

// Submit queues a prompt with POST /prompt, sending the client's id as client_id.
//
// A 400 (validation failure) returns a *PromptError; any other non-200 status
// an *HTTPError (e.g. 500 text/plain for a body ComfyUI cannot parse). After
// a network error it is unknown whether the prompt was queued; with a
// PromptID the caller can find out from Queue and History.
func (c *Client) Submit(ctx context.Context, p SubmitParams) (*SubmitResult, error) {
	if len(bytes.TrimSpace(p.Prompt)) == 0 {
		return nil, errors.New("comfy: submit: empty prompt")
	}
	body := submitBody{Prompt: p.Prompt, ClientID: c.clientID, PromptID: p.PromptID, ExtraData: p.ExtraData, Front: p.Front}
	req, err := c.newRequest(ctx, http.MethodPost, "/prompt", body)
	if err != nil {
		return nil, fmt.Errorf("comfy: submit: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("comfy: submit: %w", err)
	}
	res, err := readSubmitResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("comfy: submit: %w", err)
	}
	return res, nil
}

// readSubmitResponse interprets POST /prompt's answer and closes its body.
func readSubmitResponse(resp *http.Response) (*SubmitResult, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		defer resp.Body.Close()
		var sr submitResponse
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&sr); err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		if sr.PromptID == "" {
			return nil, errors.New("read response: no prompt_id")
		}
		return &SubmitResult{PromptID: sr.PromptID, Number: sr.Number, NodeErrors: emptyObject(sr.NodeErrors)}, nil
	case http.StatusBadRequest:
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody))
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		if perr := parsePromptError(b); perr != nil {
			return nil, perr
		}
		return nil, &HTTPError{Status: resp.StatusCode, Body: string(b[:min(len(b), maxErrorBody)])}
	default:
		return nil, readHTTPError(resp)
	}
}

// parsePromptError decodes a 400 body of POST /prompt, or returns nil when
// the body is not ComfyUI's error envelope.
func parsePromptError(b []byte) *PromptError {
	var pb promptErrorBody
	if err := json.Unmarshal(b, &pb); err != nil || pb.Error == nil {
		return nil
	}
	return &PromptError{
		Type:       pb.Error.Type,
		Message:    pb.Error.Message,
		Details:    pb.Error.Details,
		ExtraInfo:  emptyObject(pb.Error.ExtraInfo),
		NodeErrors: emptyObject(pb.NodeErrors),
	}
}

// Queue is ComfyUI's queue from GET /queue.
type Queue struct {
	// Running holds the executing prompt (at most one).
	Running []QueueItem
	// Pending holds the waiting prompts in run order: by (Number, PromptID).
	Pending []QueueItem
}

// QueueItem is one prompt in the queue.
type QueueItem struct {
	// Number is the prompt's priority; lower runs first.
	Number float64
	// PromptID is the prompt's id.
	PromptID string
	// ClientID is extra_data.client_id, empty when the prompt was queued without one.
	ClientID string
}

// Has reports whether promptID is running or pending.
func (q *Queue) Has(promptID string) bool {
	match := func(it QueueItem) bool { return it.PromptID == promptID }
	return slices.ContainsFunc(q.Running, match) || slices.ContainsFunc(q.Pending, match)
}

type queueWire struct {
	Running []json.RawMessage `json:"queue_running"`
	Pending []json.RawMessage `json:"queue_pending"`
}

// Queue reads GET /queue. ComfyUI returns the pending heap unsorted; Queue
// sorts it into run order.
func (c *Client) Queue(ctx context.Context) (*Queue, error) {
	var w queueWire
	if err := c.call(ctx, "queue", http.MethodGet, "/queue", nil, &w); err != nil {
		return nil, err
	}
	q, err := w.parse()
	if err != nil {
		return nil, fmt.Errorf("comfy: queue: %w", err)
	}
	return q, nil
}

func (w queueWire) parse() (*Queue, error) {
	running, err := parseQueueItems(w.Running)
	if err != nil {
		return nil, err
	}
	pending, err := parseQueueItems(w.Pending)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(pending, func(a, b QueueItem) int {
		return cmp.Or(cmp.Compare(a.Number, b.Number), cmp.Compare(a.PromptID, b.PromptID))
	})
	return &Queue{Running: running, Pending: pending}, nil
}

func parseQueueItems(raws []json.RawMessage) ([]QueueItem, error) {
	items := make([]QueueItem, 0, len(raws))
	for i, raw := range raws {
		it, err := parseQueueItem(raw)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		items = append(items, it)
	}
	return items, nil
}

// parseQueueItem reads [number, prompt_id, prompt, extra_data, outputs, ...].
// Only the first two elements are required; ComfyUI before v0.3.68 could send
// a sixth, later versions five.
func parseQueueItem(raw json.RawMessage) (QueueItem, error) {
	var arr []json.RawMessage
	if err := json.Unmarshal(raw, &arr); err != nil {
		return QueueItem{}, err
	}
	if len(arr) < 2 {
		return QueueItem{}, fmt.Errorf("want at least 2 elements, got %d", len(arr))
	}
	var it QueueItem
	if err := json.Unmarshal(arr[0], &it.Number); err != nil {
		return QueueItem{}, fmt.Errorf("number: %w", err)
	}
	if err := json.Unmarshal(arr[1], &it.PromptID); err != nil {
		return QueueItem{}, fmt.Errorf("prompt_id: %w", err)
	}
	if len(arr) > 3 {
		var extra struct {
			ClientID string `json:"client_id"`
		}
		if json.Unmarshal(arr[3], &extra) == nil {
			it.ClientID = extra.ClientID
		}
	}
	return it, nil
}

// QueueRemaining reads GET /prompt: the number of prompts pending plus running,
// counting every client's prompts.
func (c *Client) QueueRemaining(ctx context.Context) (int, error) {
	var w struct {
		ExecInfo struct {
			QueueRemaining *int `json:"queue_remaining"`
		} `json:"exec_info"`
	}
	if err := c.call(ctx, "queue remaining", http.MethodGet, "/prompt", nil, &w); err != nil {
		return 0, err
	}
	if w.ExecInfo.QueueRemaining == nil {
		return 0, errors.New("comfy: queue remaining: no exec_info.queue_remaining")
	}
	return *w.ExecInfo.QueueRemaining, nil
}

// Interrupt asks ComfyUI to stop a running prompt (POST /interrupt).
//
// With a promptID (ComfyUI v0.3.57+) only that prompt is interrupted, and only
// if it is the one running; older servers ignore the id and interrupt
// whatever runs. An empty promptID interrupts whatever runs. The interrupt is
// cooperative: it takes effect at the next node boundary or progress tick, and
// is lost if the prompt finishes first. It never removes a pending prompt; use
// DeleteQueued for that.
func (c *Client) Interrupt(ctx context.Context, promptID string) error {
	body := map[string]string{}
	if promptID != "" {
		body["prompt_id"] = promptID
	}
	return c.call(ctx, "interrupt", http.MethodPost, "/interrupt", body, nil)
}

// DeleteQueued removes pending prompts (POST /queue {"delete": [...]}).
// ComfyUI silently ignores ids that are running or unknown.
func (c *Client) DeleteQueued(ctx context.Context, promptIDs ...string) error {
	if len(promptIDs) == 0 {
		return nil
	}
	body := map[string][]string{"delete": promptIDs}
	return c.call(ctx, "delete queued", http.MethodPost, "/queue", body, nil)
}
