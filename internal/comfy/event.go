package comfy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
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
// a JSON object with a non-empty string type. Members are matched as
// encoding/json matches struct fields (case-insensitively, the last of a
// repeated name wins), by a scan of the bytes (scan.go) after json.Valid.
func DecodeEvent(frame []byte) (Event, error) {
	if !json.Valid(frame) {
		var v any
		return Event{}, fmt.Errorf("%w: %v", ErrMalformedFrame, json.Unmarshal(frame, &v))
	}
	if i := skipSpace(frame, 0); frame[i] != '{' {
		if frame[i] == 'n' { // null decodes to nothing: no type
			return Event{}, fmt.Errorf("%w: no type", ErrMalformedFrame)
		}
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrMalformedFrame)
	}
	var typ, data []byte
	badType := false
	eachMember(frame, func(key, val []byte) {
		switch {
		case keyIs(key, "type"):
			switch {
			case val[0] == '"':
				typ = val
			case string(val) != "null": // null leaves it as it was
				badType = true
			}
		case keyIs(key, "data"):
			data = val
		}
	})
	if badType {
		return Event{}, fmt.Errorf("%w: type is not a string", ErrMalformedFrame)
	}
	ev := Event{Type: jsonStringValid(typ)}
	if ev.Type == "" {
		return Event{}, fmt.Errorf("%w: no type", ErrMalformedFrame)
	}
	if data != nil {
		ev.Data = json.RawMessage(bytes.Clone(data))
	}
	var f eventData // data that is not an object fills nothing
	eachMember(ev.Data, f.set)
	ev.fill(&f)
	return ev, nil
}

// eventData holds the keys of data the convenience fields come from.
type eventData struct {
	PromptID, DisplayNode, SID, Node, NodeID, Value, Max, Status, Nodes, Output json.RawMessage
}

// set keeps val if key is one of eventData's.
func (f *eventData) set(key, val []byte) {
	for _, m := range [...]struct {
		name string
		dst  *json.RawMessage
	}{
		{"prompt_id", &f.PromptID}, {"display_node", &f.DisplayNode}, {"sid", &f.SID}, {"node", &f.Node},
		{"node_id", &f.NodeID}, {"value", &f.Value}, {"max", &f.Max}, {"status", &f.Status},
		{"nodes", &f.Nodes}, {"output", &f.Output},
	} {
		if keyIs(key, m.name) {
			*m.dst = val
			return
		}
	}
}

// fill sets the convenience fields from data's keys, ignoring ill-typed ones.
func (ev *Event) fill(f *eventData) {
	ev.PromptID = jsonString(f.PromptID)
	ev.DisplayNode = jsonString(f.DisplayNode)
	ev.SID = jsonString(f.SID)
	if f.Node != nil { // the key is there, null included
		ev.NodeNull = string(f.Node) == "null"
		ev.Node = jsonString(f.Node)
	} else {
		ev.Node = jsonString(f.NodeID)
	}
	ev.Value = jsonInt(f.Value)
	ev.Max = jsonInt(f.Max)
	ev.QueueRemaining = queueRemaining(f.Status)
	ev.fillNodes(f.Nodes)
	if len(f.Output) > 0 {
		_ = json.Unmarshal(f.Output, &ev.Output)
	}
}

// queueRemaining reads status.exec_info.queue_remaining as encoding/json
// reads it into nested structs: a repeated exec_info object adds to the
// one before it rather than replacing it, and a null leaves it as it was.
func queueRemaining(status json.RawMessage) int {
	var n flexInt
	eachMember(status, func(key, info []byte) {
		if keyIs(key, "exec_info") {
			eachMember(info, func(key, q []byte) {
				if keyIs(key, "queue_remaining") {
					_ = n.UnmarshalJSON(q)
				}
			})
		}
	})
	return int(n)
}

// fillNodes reads "nodes": a list of ids (execution_cached) or an object of
// node states (progress_state, a dozen a prompt: scanned, not reflected).
func (ev *Event) fillNodes(raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	if raw[0] == '[' {
		if json.Unmarshal(raw, &ev.Nodes) != nil {
			ev.Nodes = nil
		}
		return
	}
	if raw[0] != '{' {
		return
	}
	ev.NodeStates = map[string]NodeState{}
	eachMember(raw, func(key, val []byte) {
		ev.NodeStates[jsonStringValid(key)] = nodeState(val)
	})
}

// nodeState reads one node of progress_state as encoding/json would: a
// member of the wrong JSON type leaves its field as it was.
func nodeState(raw []byte) NodeState {
	var ns NodeState
	eachMember(raw, func(key, val []byte) {
		switch {
		case keyIs(key, "state"):
			if val[0] == '"' {
				ns.State = jsonStringValid(val)
			}
		case keyIs(key, "value"):
			ns.Value = jsonFloat(val, ns.Value)
		case keyIs(key, "max"):
			ns.Max = jsonFloat(val, ns.Max)
		}
	})
	return ns
}

// jsonFloat reads a JSON number, or keeps old for anything else (a value
// out of float64's range included, as encoding/json does).
func jsonFloat(raw []byte, old float64) float64 {
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return old
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return old
	}
	return f
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

// jsonStringValid is jsonString that, as encoding/json does, replaces
// invalid UTF-8 with U+FFFD.
func jsonStringValid(raw json.RawMessage) string {
	if s := jsonString(raw); utf8.ValidString(s) {
		return s
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
