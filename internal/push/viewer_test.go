package push

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
)

// TestInstanceStatusTaskIDForOwnerOnly: every client gets an instance's
// status, but the id of the task running there only goes to admins and the
// task's owner, whether the status goes out at once or is held past
// GlobalStatusRate clients.
func TestInstanceStatusTaskIDForOwnerOnly(t *testing.T) {
	t.Parallel()
	for name, rate := range map[string]int{"direct": 0, "held": 1} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Options{GlobalStatusInterval: 10 * time.Millisecond, GlobalStatusRate: rate}, testHooks{})
			want := map[string]string{"root": "t1", "alice": "t1", "bob": "", "": ""}
			clients := map[string]*client{}
			for user := range want {
				clients[user] = h.dial(user, user == "root")
				clients[user].next() // global_status: registered
			}
			data, _ := json.Marshal(map[string]any{"instanceId": "i1", "alive": true, "busy": true, "currentTaskId": "t1"})
			h.publish(event.Event{Type: event.TypeInstanceStatus, Data: data, Owner: "alice", Time: 1704067200000})
			for user, c := range clients {
				m := c.nextNot(TypeGlobalStatus)
				var d struct {
					InstanceID    string `json:"instanceId"`
					Busy          bool   `json:"busy"`
					CurrentTaskID string `json:"currentTaskId"`
				}
				if err := json.Unmarshal(m.Data, &d); err != nil || m.Type != event.TypeInstanceStatus || m.Timestamp != 1704067200000 {
					t.Fatalf("%q got %s at %d: %s", user, m.Type, m.Timestamp, m.Data)
				}
				if d.InstanceID != "i1" || !d.Busy || d.CurrentTaskID != want[user] {
					t.Errorf("%q got %s, want i1 busy with currentTaskId %q", user, m.Data, want[user])
				}
			}
		})
	}
}

// personal is a Personal snapshot: each variant is its own name.
type personal struct{ built atomic.Int32 }

func (p *personal) Variant(c Client) string {
	if c.Admin {
		return "admin"
	}
	if c.Username == "alice" {
		return "alice"
	}
	return "others"
}

func (p *personal) Data(variant string, _ Client) any {
	p.built.Add(1)
	return map[string]string{"variant": variant}
}

// TestGlobalStatusPersonal: global_status data that differs by viewer is
// built once per variant of a broadcast, and each client gets its own.
func TestGlobalStatusPersonal(t *testing.T) {
	t.Parallel()
	p := &personal{}
	h := newHarness(t, Options{
		Snapshot:             func(context.Context) (any, error) { return p, nil },
		GlobalStatusInterval: time.Millisecond,
	}, testHooks{})
	want := map[string]string{"root": "admin", "alice": "alice", "bob": "others", "carol": "others"}
	clients := map[string]*client{}
	for user := range want {
		clients[user] = h.dial(user, user == "root")
		clients[user].next() // the connect snapshot
	}
	before := p.built.Load()
	h.publish(instanceEvent("i1")) // marks a change: one broadcast
	for user, c := range clients {
		m := c.nextNot(event.TypeInstanceStatus)
		var d struct{ Variant string }
		if err := json.Unmarshal(m.Data, &d); err != nil || m.Type != TypeGlobalStatus || d.Variant != want[user] {
			t.Errorf("%s got %s %s, want global_status of variant %q", user, m.Type, m.Data, want[user])
		}
	}
	if built := p.built.Load() - before; built != 3 {
		t.Errorf("the broadcast built %d variants, want 3 (admin, alice, others)", built)
	}
}
