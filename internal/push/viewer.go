package push

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/comfyfleet/comfyfleet/internal/event"
)

// What a client sees of the instances depends on who it is: every client
// sees whether an instance is busy, but only admins and the task's owner
// see the id of the task running there (an instance's folders are shared,
// and a task id is nobody else's business). instance_status events carry
// the owner of the current task in Event.Owner; global_status data that
// differs by viewer implements Personal.

// Personal is global_status data (Options.Snapshot) that differs by viewer.
// Clients given the same variant get the same bytes, encoded once per
// broadcast, so the cost is per variant, not per client.
type Personal interface {
	// Variant names the variant c gets; it is called for every client, so
	// it should be cheap.
	Variant(c Client) string
	// Data is a variant's data; it is called once per variant, with the
	// first client given it.
	Data(variant string, c Client) any
}

// instanceMsg is an instance_status message in its two forms.
type instanceMsg struct {
	full []byte
	// public has currentTaskId blank; nil when full shows no task.
	public []byte
	// owner owns the task full shows.
	owner string
	// seq is the event's number in the event log.
	seq int64
}

// newInstanceMsg adds to full, ev encoded, the form without the task id.
func (h *Hub) newInstanceMsg(ev event.Event, full []byte) (instanceMsg, error) {
	m := instanceMsg{full: full, owner: ev.Owner, seq: ev.Seq}
	data, ok := withoutTaskID(ev.Data)
	if !ok {
		return m, nil
	}
	var err error
	m.public, err = h.encodeSeq(ev.Type, ev.Time, data, "", ev.Seq)
	return m, err
}

// forClient is the form c may see.
func (m instanceMsg) forClient(c Client) []byte {
	if m.public == nil || c.Admin || (c.Username != "" && c.Username == m.owner) {
		return m.full
	}
	return m.public
}

// withoutTaskID returns data with a non-empty currentTaskId blanked, and
// whether there was one.
func withoutTaskID(data json.RawMessage) (json.RawMessage, bool) {
	if !bytes.Contains(data, []byte(`"currentTaskId"`)) {
		return nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return nil, false
	}
	id, ok := m["currentTaskId"]
	if !ok || string(id) == `""` || string(id) == "null" {
		return nil, false
	}
	m["currentTaskId"] = json.RawMessage(`""`)
	b, err := json.Marshal(m)
	if err != nil {
		return nil, false
	}
	return b, true
}

// statusEncoder encodes one global_status snapshot for each variant its
// clients need, once per variant.
type statusEncoder struct {
	h     *Hub
	ts    int64
	data  any
	cache map[string][]byte
}

// newStatusEncoder takes a fresh snapshot.
func (h *Hub) newStatusEncoder(ctx context.Context) (*statusEncoder, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.WriteTimeout)
	defer cancel()
	now := h.opts.Now()
	data, err := h.opts.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return &statusEncoder{h: h, ts: now.UnixMilli(), data: data, cache: map[string][]byte{}}, nil
}

// forClient is the global_status message for c.
func (e *statusEncoder) forClient(c Client) ([]byte, error) {
	key, data := "", e.data
	p, personal := e.data.(Personal)
	if personal {
		key = p.Variant(c)
	}
	if msg, ok := e.cache[key]; ok {
		return msg, nil
	}
	if personal {
		data = p.Data(key, c)
	}
	msg, err := e.h.encode(TypeGlobalStatus, e.ts, data, "")
	if err != nil {
		return nil, err
	}
	e.cache[key] = msg
	return msg, nil
}
