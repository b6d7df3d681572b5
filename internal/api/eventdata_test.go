package api

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TestEventDataRendersURLsForThisGateway: a task_completed collected by
// another replica reaches this gateway's /ws clients with file URLs that
// name this gateway, as the task read over REST does; other events keep
// their data.
func TestEventDataRendersURLsForThisGateway(t *testing.T) {
	t.Parallel()
	var cfg config.Config
	cfg.Server.PublicBaseURL = "http://b:3000"
	s := New(Deps{Log: slog.New(slog.DiscardHandler), Config: fixedConfig{cfg}})
	collected := &task.Result{
		Files: []string{"http://a:3000/files/f1/x.png", "http://elsewhere/y.png"},
		Outputs: map[string][]task.Output{"9": {
			{URL: "http://a:3000/files/f1/x.png", Filename: "x.png", Type: "output", NodeID: "9", FileID: "f1"},
			{URL: "http://elsewhere/y.png", Filename: "y.png", Type: "output", NodeID: "9"},
		}},
	}
	data, err := json.Marshal(event.TaskCompletedData{TaskID: "t1", InstanceID: "i1", Result: collected})
	if err != nil {
		t.Fatal(err)
	}
	got := s.EventData(event.Event{Type: event.TypeTaskCompleted, TaskID: "t1", Data: data})
	var d event.TaskCompletedData
	if err := json.Unmarshal(got, &d); err != nil {
		t.Fatalf("EventData = %s: %v", got, err)
	}
	if d.TaskID != "t1" || d.InstanceID != "i1" || d.Result == nil {
		t.Fatalf("EventData = %s, want the task and instance kept", got)
	}
	want := []string{"http://b:3000/files/f1/x.png", "http://elsewhere/y.png"}
	if len(d.Result.Files) != 2 || d.Result.Files[0] != want[0] || d.Result.Files[1] != want[1] {
		t.Errorf("files %v, want %v", d.Result.Files, want)
	}
	if outs := d.Result.Outputs["9"]; len(outs) != 2 || outs[0].URL != want[0] || outs[1].URL != want[1] {
		t.Errorf("outputs %+v, want URLs %v", outs, want)
	}
	status := json.RawMessage(`{"taskId":"t1","status":"running"}`)
	if got := s.EventData(event.Event{Type: event.TypeTaskStatus, Data: status}); string(got) != string(status) {
		t.Errorf("task_status data %s, want it unchanged", got)
	}
}
