package event_test

import (
	"encoding/json"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func TestAudienceOf(t *testing.T) {
	tests := map[string]event.Audience{
		event.TypeTaskStatus:          event.TaskOwner,
		event.TypeTaskProgress:        event.TaskOwner,
		event.TypeTaskCompleted:       event.TaskOwner,
		event.TypeTaskFailed:          event.TaskOwner,
		event.TypeTaskCancelled:       event.TaskOwner,
		event.TypeTaskPreview:         event.TaskOwner,
		event.TypeInstanceStatus:      event.Everyone,
		event.TypeTaskQueued:          event.Internal,
		event.TypeTaskCancelRequested: event.Internal,
		"something_new":               event.Internal,
	}
	for typ, want := range tests {
		if got := event.AudienceOf(typ); got != want {
			t.Errorf("AudienceOf(%q) = %v, want %v", typ, got, want)
		}
	}
}

func TestFinal(t *testing.T) {
	tests := []struct {
		name   string
		status task.Status
		want   []string
	}{
		{"completed", task.StatusCompleted, []string{event.TypeTaskStatus, event.TypeTaskCompleted}},
		{"failed", task.StatusFailed, []string{event.TypeTaskStatus, event.TypeTaskFailed}},
		{"cancelled", task.StatusCancelled, []string{event.TypeTaskStatus, event.TypeTaskCancelled}},
		{"running", task.StatusRunning, []string{event.TypeTaskStatus}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := &task.Task{ID: "t1", Owner: "alice", Status: tc.status, InstanceID: "i1"}
			evs, err := event.Final(tk)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != len(tc.want) {
				t.Fatalf("got %d events, want %v", len(evs), tc.want)
			}
			for i, ev := range evs {
				if ev.Type != tc.want[i] || ev.TaskID != "t1" || ev.Owner != "alice" || ev.Time == 0 {
					t.Errorf("event %d = %+v, want type %s for t1 of alice, stamped", i, ev, tc.want[i])
				}
				var d struct {
					TaskID     string `json:"taskId"`
					InstanceID string `json:"instanceId"`
				}
				if err := json.Unmarshal(ev.Data, &d); err != nil || d.TaskID != "t1" || d.InstanceID != "i1" {
					t.Errorf("event %d data = %s (%v), want taskId t1 and instanceId i1", i, ev.Data, err)
				}
			}
		})
	}
}

func TestInstance(t *testing.T) {
	ev := event.Instance(instance.State{ID: "i1", Alive: true, CurrentTaskID: "t1"}, "alice")
	if ev.Type != event.TypeInstanceStatus || ev.Owner != "alice" || ev.TaskID != "" {
		t.Fatalf("event = %+v, want instance_status owned by alice, no task id", ev)
	}
	var d map[string]any
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"instanceId", "alive", "busy", "enabled", "currentTaskId", "lastError", "drainReason", "autoDrained"} {
		if _, ok := d[k]; !ok {
			t.Errorf("instance_status data %s lacks %q", ev.Data, k)
		}
	}
}
