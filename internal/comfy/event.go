package comfy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// WebSocket event types. The execution_* names are declared with the history
// events. Types not listed here are delivered too, with Type and Data set.
const (
	// EventStatus is the queue-size broadcast; the first one on a socket carries SID.
	EventStatus = "status"
	// EventExecuting marks a node starting; with NodeNull set it marks the prompt finished
	// (sent after the history entry is written).
	EventExecuting = "executing"
	// EventExecuted carries a node's UI output.
	EventExecuted = "executed"
	// EventProgress is a node's step counter (Value of Max).
	EventProgress = "progress"
	// EventProgressState (v0.3.45+) carries the state of every started node of the run.
	EventProgressState = "progress_state"
	// EventFeatureFlags answers a client's feature_flags message.
	EventFeatureFlags = "feature_flags"
	// EventBinary is a binary frame (a preview image or streamed text); see BinaryType.
	EventBinary = "binary"
)

// Binary frame types (the frame's first 4 bytes, big-endian).
const (
	// BinaryPreviewImage is [1][format: 1 JPEG, 2 PNG][image bytes].
	BinaryPreviewImage uint32 = 1
	// BinaryText is [3][len][node id][text] (v0.3.34+).
	BinaryText uint32 = 3
	// BinaryPreviewImageWithMetadata is [4][len][JSON metadata][image bytes],
	// sent only to clients that negotiated supports_preview_metadata.
	BinaryPreviewImageWithMetadata uint32 = 4
)

// Event is one decoded WebSocket message. Type and Data are always set (Data
// is the raw "data" object); the other fields are filled when the message
// carries them and are zero otherwise.
type Event struct {
	// Type is the message type, e.g. "executing", or EventBinary.
	Type string
	// Data is the raw data object; for a type-4 binary frame, its JSON metadata.
	Data json.RawMessage

	// PromptID is data.prompt_id. It is empty on status frames and on the
	// executing frame ComfyUI replays to a reconnecting client.
	PromptID string
	// Node is data.node, or data.node_id when there is no node key
	// (execution_error, execution_interrupted, binary metadata). Empty when null.
	Node string
	// NodeNull is true when data.node is JSON null: executing{node: null}
	// means the prompt is done.
	NodeNull bool
	// DisplayNode is data.display_node.
	DisplayNode string
	// Value and Max are a progress event's step counter.
	Value, Max int
	// SID is the session id of the first status frame on a socket.
	SID string
	// QueueRemaining is a status frame's status.exec_info.queue_remaining.
	QueueRemaining int
	// Nodes lists execution_cached's cached node ids.
	Nodes []string
	// NodeStates is progress_state's per-node state, keyed by node id.
	NodeStates map[string]NodeState
	// Output is executed's UI output.
	Output NodeOutput
	// BinaryType is the type of a binary frame (BinaryPreviewImage, ...).
	BinaryType uint32
	// Image is the image of a preview frame (type 1 or 4): a sampler's
	// preview or a SaveImageWebsocket output, exactly as sent. It is nil
	// when the image is larger than the connection keeps (see ImageSize).
	Image []byte
	// ImageFormat is the image's format: "png", "jpeg", "webp", or "" when
	// the frame does not say.
	ImageFormat string
	// ImageSize is the image's length in the frame, also when Image is nil.
	ImageSize int
}

// NodeState is one node of a progress_state message.
type NodeState struct {
	// State is "running" or "finished". A node that failed or was interrupted stays "running".
	State string `json:"state"`
	// Value and Max are the node's progress; Value equals Max once finished.
	Value float64 `json:"value"`
	Max   float64 `json:"max"`
}

// DecodeEvent decodes a text frame {"type": ..., "data": {...}}. Unknown types
// and fields are kept in Type and Data; fields of an unexpected JSON type are
// left zero. It fails (wrapping ErrMalformedFrame) only when the frame is not
// a JSON object with a non-empty string type.
func DecodeEvent(frame []byte) (Event, error) {
	var w struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(frame, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformedFrame, err)
	}
	if w.Type == "" {
		return Event{}, fmt.Errorf("%w: no type", ErrMalformedFrame)
	}
	ev := Event{Type: w.Type, Data: w.Data}
	// Every field as raw JSON, so that an ill-typed one cannot fail the
	// others; one pass over data, no map.
	var f eventData
	if json.Unmarshal(w.Data, &f) == nil {
		ev.fill(&f)
	}
	return ev, nil
}

// eventData holds the keys of data the convenience fields come from.
type eventData struct {
	PromptID    json.RawMessage `json:"prompt_id"`
	DisplayNode json.RawMessage `json:"display_node"`
	SID         json.RawMessage `json:"sid"`
	Node        json.RawMessage `json:"node"`
	NodeID      json.RawMessage `json:"node_id"`
	Value       json.RawMessage `json:"value"`
	Max         json.RawMessage `json:"max"`
	Status      json.RawMessage `json:"status"`
	Nodes       json.RawMessage `json:"nodes"`
	Output      json.RawMessage `json:"output"`
}

// fill sets the convenience fields from data's keys, ignoring ill-typed ones.
func (ev *Event) fill(f *eventData) {
	ev.PromptID = jsonString(f.PromptID)
	ev.DisplayNode = jsonString(f.DisplayNode)
	ev.SID = jsonString(f.SID)
	if f.Node != nil { // the key is there, null included
		ev.NodeNull = bytes.Equal(bytes.TrimSpace(f.Node), []byte("null"))
		ev.Node = jsonString(f.Node)
	} else {
		ev.Node = jsonString(f.NodeID)
	}
	ev.Value = jsonInt(f.Value)
	ev.Max = jsonInt(f.Max)
	if len(f.Status) > 0 {
		var s struct {
			ExecInfo struct {
				QueueRemaining flexInt `json:"queue_remaining"`
			} `json:"exec_info"`
		}
		_ = json.Unmarshal(f.Status, &s)
		ev.QueueRemaining = int(s.ExecInfo.QueueRemaining)
	}
	ev.fillNodes(f.Nodes)
	if len(f.Output) > 0 {
		_ = json.Unmarshal(f.Output, &ev.Output)
	}
}

// fillNodes reads "nodes": a list of ids (execution_cached) or an object of
// node states (progress_state).
func (ev *Event) fillNodes(raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	if json.Unmarshal(raw, &ev.Nodes) == nil {
		return
	}
	ev.Nodes = nil
	var states map[string]json.RawMessage
	if json.Unmarshal(raw, &states) != nil {
		return
	}
	ev.NodeStates = make(map[string]NodeState, len(states))
	for id, s := range states {
		var ns NodeState
		_ = json.Unmarshal(s, &ns) // an ill-typed field leaves the rest decoded
		ev.NodeStates[id] = ns
	}
}

func jsonString(raw json.RawMessage) string {
	// Most strings of a frame (ids, node ids, types) need no unescaping:
	// take them as they are. raw is valid JSON, checked by the decoder.
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : n-1])
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// jsonInt reads a JSON number, truncating a fraction; anything else is 0.
func jsonInt(raw json.RawMessage) int {
	if len(raw) == 0 {
		return 0
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > math.MaxInt32 {
		return 0
	}
	return int(f)
}

// decodeBinary decodes a binary frame. The image of a preview frame is
// kept as a slice of frame.
func decodeBinary(frame []byte) (Event, error) {
	if len(frame) < 4 {
		return Event{}, fmt.Errorf("%w: binary frame of %d bytes", ErrMalformedFrame, len(frame))
	}
	ev := Event{Type: EventBinary, BinaryType: binary.BigEndian.Uint32(frame)}
	if len(frame) < 8 {
		return ev, nil
	}
	n := uint64(binary.BigEndian.Uint32(frame[4:8]))
	body := frame[8:]
	switch ev.BinaryType {
	case BinaryPreviewImage:
		ev.ImageFormat = legacyFormats[n]
		ev.Image, ev.ImageSize = body, len(body)
	case BinaryPreviewImageWithMetadata:
		if n > uint64(len(body)) {
			return ev, nil // metadata longer than the frame: keep just the type
		}
		ev.decodeMetadata(body[:n])
		ev.Image, ev.ImageSize = body[n:], len(body)-int(n)
	case BinaryText:
		if n <= uint64(len(body)) {
			ev.Node = string(body[:n])
		}
	}
	return ev, nil
}

// legacyFormats maps a type-1 frame's format code to ImageFormat.
var legacyFormats = map[uint64]string{1: "jpeg", 2: "png"}

// decodeMetadata reads a type-4 frame's JSON metadata; fields of the wrong
// JSON type are left zero.
func (ev *Event) decodeMetadata(meta []byte) {
	if !json.Valid(meta) {
		return
	}
	ev.Data = append(json.RawMessage(nil), meta...)
	var fields map[string]json.RawMessage
	if json.Unmarshal(meta, &fields) != nil {
		return
	}
	ev.PromptID = jsonString(fields["prompt_id"])
	ev.Node = jsonString(fields["node_id"])
	ev.DisplayNode = jsonString(fields["display_node_id"])
	switch t := jsonString(fields["image_type"]); t {
	case "image/png", "image/jpeg", "image/webp":
		ev.ImageFormat = strings.TrimPrefix(t, "image/")
	}
}
