package dispatch

import (
	"log/slog"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/task"
)

// BenchmarkNewRun is what every run costs before it does anything: its
// channels, progress and frame state.
func BenchmarkNewRun(b *testing.B) {
	dr := &driver{d: &Dispatcher{}, log: slog.New(slog.DiscardHandler)}
	t := &task.Task{ID: "bench", Owner: "alice", Workflow: []byte(`{"1":{"class_type":"EmptyImage","inputs":{}}}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = newRun(dr, t, false)
	}
}
