package push

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/event"
)

// Message types the hub itself sends to clients. The events it forwards
// are named in package event.
const (
	TypeGlobalStatus = "global_status"
	// TypeResync tells a client that resumed (?since=) from a position the
	// event log no longer holds: it reloads what it shows over REST; the
	// events that follow the resync are live.
	TypeResync     = "resync"
	TypePong       = "pong"
	TypeSubscribed = "subscribed"
	TypeError      = "error"
)

// Message types clients send.
const (
	TypePing      = "ping"
	TypeSubscribe = "subscribe"
)

// Error codes carried in an error message's data.error.
const (
	ErrCodeBadMessage     = "bad_message"
	ErrCodeUnknownType    = "unknown_type"
	ErrCodeTooManyTaskIDs = "too_many_task_ids"
)

// MaxSubscribeTaskIDs bounds the task ids of one subscribe message.
const MaxSubscribeTaskIDs = 1000

// marksChange reports whether an event makes global_status stale: any
// instance or task event, internal ones (task_queued) included, except a
// preview.
func marksChange(typ string) bool {
	return typ == event.TypeInstanceStatus || (strings.HasPrefix(typ, "task_") && typ != event.TypeTaskPreview)
}

// envelope is the seed's message shape, both ways, plus seq: the number of
// a logged event in the store's event log (event.Logged), which a client
// passes back as ?since= to resume after a disconnect. Transient events
// (task_progress, task_preview) and the hub's own messages have none.
type envelope struct {
	Type      string `json:"type"`
	Timestamp int64  `json:"timestamp"`
	Data      any    `json:"data"`
	RequestID string `json:"requestId,omitempty"`
	Seq       int64  `json:"seq,omitempty"`
}

// resyncData is the data of resync: the position the client asked for and
// the newest event when it was refused; live events follow.
type resyncData struct {
	Since int64 `json:"since"`
	Last  int64 `json:"last"`
}

// inbound is a message from a client.
type inbound struct {
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	RequestID string          `json:"requestId"`
}

// errorData is the data of an error message, shaped like the REST errors.
type errorData struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// subscribeData is the data of subscribe and subscribed messages.
type subscribeData struct {
	TaskIDs []string `json:"taskIds"`
}

var emptyObject = json.RawMessage(`{}`)

// encode builds one message. A zero ts means now; empty raw data becomes {}.
func (h *Hub) encode(typ string, ts int64, data any, requestID string) ([]byte, error) {
	return h.encodeSeq(typ, ts, data, requestID, 0)
}

// encodeSeq is encode for a logged event numbered seq.
func (h *Hub) encodeSeq(typ string, ts int64, data any, requestID string, seq int64) ([]byte, error) {
	if ts == 0 {
		ts = h.opts.Now().UnixMilli()
	}
	if raw, ok := data.(json.RawMessage); ok && len(raw) == 0 {
		data = emptyObject
	}
	b, err := json.Marshal(envelope{Type: typ, Timestamp: ts, Data: data, RequestID: requestID, Seq: seq})
	if err != nil {
		return nil, fmt.Errorf("push: encode %s: %w", typ, err)
	}
	return b, nil
}

// reply encodes an answer to a client message. Its data is always encodable.
func (h *Hub) reply(typ string, data any, requestID string) []byte {
	b, err := h.encode(typ, 0, data, requestID)
	if err != nil {
		panic(err) // only fixed types reach here
	}
	return b
}

// errorReply encodes an error message.
func (h *Hub) errorReply(code, message, requestID string) []byte {
	return h.reply(TypeError, errorData{Error: code, Message: message}, requestID)
}

// handle answers one text message from c and returns the reply.
func (h *Hub) handle(c *conn, b []byte) []byte {
	var in inbound
	if err := json.Unmarshal(b, &in); err != nil {
		return h.errorReply(ErrCodeBadMessage, "message is not a JSON object: "+err.Error(), "")
	}
	switch in.Type {
	case TypePing:
		return h.reply(TypePong, emptyObject, in.RequestID)
	case TypeSubscribe:
		return h.subscribe(c, in)
	}
	return h.errorReply(ErrCodeUnknownType, fmt.Sprintf("unknown message type %q", in.Type), in.RequestID)
}

// subscribe narrows c's task events to the listed ids; an empty or missing
// list restores the default (all entitled tasks).
func (h *Hub) subscribe(c *conn, in inbound) []byte {
	var d subscribeData
	if len(in.Data) > 0 && string(in.Data) != "null" {
		if err := json.Unmarshal(in.Data, &d); err != nil {
			return h.errorReply(ErrCodeBadMessage, "subscribe data must be {\"taskIds\":[...]}", in.RequestID)
		}
	}
	if len(d.TaskIDs) > MaxSubscribeTaskIDs {
		msg := fmt.Sprintf("at most %d task ids per subscribe", MaxSubscribeTaskIDs)
		return h.errorReply(ErrCodeTooManyTaskIDs, msg, in.RequestID)
	}
	c.setFilter(d.TaskIDs)
	if d.TaskIDs == nil {
		d.TaskIDs = []string{}
	}
	return h.reply(TypeSubscribed, d, in.RequestID)
}

// wants reports whether c should receive an event for audience a.
func (c *conn) wants(a event.Audience, ev *event.Event) bool {
	if a == event.Everyone {
		return true
	}
	if !c.client.Admin && (c.client.Username == "" || ev.Owner != c.client.Username) {
		return false
	}
	if f := c.filter.Load(); f != nil {
		_, ok := (*f)[ev.TaskID]
		return ok
	}
	return true
}

// setFilter sets the task ids c follows; empty means all it may see.
func (c *conn) setFilter(ids []string) {
	if len(ids) == 0 {
		c.filter.Store(nil)
		return
	}
	f := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		f[id] = struct{}{}
	}
	c.filter.Store(&f)
}
