package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func TestWebhookEventOf(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
	ms := at.UnixMilli()
	const ts = `"timestamp":"2025-03-01T12:00:00.123Z"`
	tests := []struct {
		name    string
		ev      event.Event
		id, typ string
		payload string // "" when the event has no webhook event
	}{
		{"pending", event.Event{Type: event.TypeTaskStatus, TaskID: "t1", Owner: "alice", Time: ms,
			Data: []byte(`{"taskId":"t1","status":"pending","instanceId":"","progress":0,"attempts":0}`)},
			"evt_t1_pending.0", "task.pending",
			`{"type":"task.pending",` + ts + `,"data":{"taskId":"t1","status":"pending","instanceId":"","progress":0,"attempts":0}}`},
		{"running", event.Event{Type: event.TypeTaskStatus, TaskID: "t1", Owner: "alice", Time: ms,
			Data: []byte(`{"taskId":"t1","status":"running","instanceId":"i1","progress":0,"attempts":2}`)},
			"evt_t1_running.2", "task.running",
			`{"type":"task.running",` + ts + `,"data":{"taskId":"t1","status":"running","instanceId":"i1","progress":0,"attempts":2}}`},
		{"completed", event.Event{Type: event.TypeTaskCompleted, TaskID: "t1", Owner: "alice", Time: ms,
			Data: []byte(`{"taskId":"t1","instanceId":"i1","result":{"files":["http://gw/f/a.png"]}}`)},
			"evt_t1_completed", "task.completed",
			`{"type":"task.completed",` + ts + `,"data":{"taskId":"t1","instanceId":"i1","result":{"files":["http://gw/f/a.png"]},"status":"completed"}}`},
		{"failed", event.Event{Type: event.TypeTaskFailed, TaskID: "t1", Owner: "alice", Time: ms,
			Data: []byte(`{"taskId":"t1","instanceId":"i1","error":{"type":"x","message":"\u003cboom\u003e"}}`)},
			"evt_t1_failed", "task.failed",
			`{"type":"task.failed",` + ts + `,"data":{"taskId":"t1","instanceId":"i1","error":{"type":"x","message":"\u003cboom\u003e"},"status":"failed"}}`},
		{"cancelled, empty data", event.Event{Type: event.TypeTaskCancelled, TaskID: "t1", Owner: "alice", Time: ms, Data: []byte(`{}`)},
			"evt_t1_cancelled", "task.cancelled", `{"type":"task.cancelled",` + ts + `,"data":{"status":"cancelled"}}`},
		{"task_status of a finished task", event.Event{Type: event.TypeTaskStatus, TaskID: "t1", Time: ms,
			Data: []byte(`{"taskId":"t1","status":"completed","attempts":1}`)}, "", "", ""},
		{"task_queued", event.Event{Type: event.TypeTaskQueued, TaskID: "t1", Time: ms, Data: []byte(`{"taskId":"t1","status":"pending"}`)}, "", "", ""},
		{"no task", event.Event{Type: event.TypeTaskCompleted, Time: ms, Data: []byte(`{"result":null}`)}, "", "", ""},
		{"data not an object", event.Event{Type: event.TypeTaskCompleted, TaskID: "t1", Time: ms, Data: []byte(`[1]`)}, "", "", ""},
		{"data broken", event.Event{Type: event.TypeTaskCompleted, TaskID: "t1", Time: ms, Data: []byte(`{"taskId":}`)}, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := store.WebhookEventOf(tc.ev)
			if ok != (tc.payload != "") {
				t.Fatalf("ok = %v, want %v", ok, tc.payload != "")
			}
			if !ok {
				return
			}
			if p.EventID != tc.id || p.Type != tc.typ || p.TaskID != tc.ev.TaskID || p.Owner != tc.ev.Owner || !p.Now.Equal(at) {
				t.Errorf("params = %s %s of %s by %s at %v; want %s %s of %s by %s at %v",
					p.EventID, p.Type, p.TaskID, p.Owner, p.Now, tc.id, tc.typ, tc.ev.TaskID, tc.ev.Owner, at)
			}
			if string(p.Payload) != tc.payload {
				t.Errorf("payload\n%s\nwant\n%s", p.Payload, tc.payload)
			}
			if !json.Valid(p.Payload) {
				t.Errorf("payload %s is not JSON", p.Payload)
			}
		})
	}
}
