package sqlitestore

import (
	"context"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/event"
)

// benchEventData is the data of a typical task_status.
var benchEventData = []byte(`{"taskId":"3f1d2c9e-5b7a-4c1e-9d2f-0a6b8c4e7f10","status":"running","instanceId":"127.0.0.1:8001","progress":0,"attempts":1}`)

// BenchmarkPublish is the cost of one event with one subscriber: a logged
// type (numbered and written to the event log, one write) against a
// transient one (handed to the subscribers only). Run with:
//
//	go test -run '^$' -bench Publish ./internal/store/sqlitestore
func BenchmarkPublish(b *testing.B) {
	for _, bc := range []struct{ name, typ string }{
		{"logged", event.TypeTaskStatus}, {"transient", event.TypeTaskProgress},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openFile(b, WithSync(SyncNormal))
			ctx := context.Background()
			sub, err := s.Subscribe(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			go func() {
				for range sub.C() {
				}
			}()
			ev := event.Event{Type: bc.typ, Data: benchEventData, TaskID: "3f1d2c9e-5b7a-4c1e-9d2f-0a6b8c4e7f10", Owner: "alice", Time: 1}
			defer cpuPerOp(b)()
			for b.Loop() {
				if err := s.Publish(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublishParallel is BenchmarkPublish's logged case from
// concurrent publishers, as a busy gateway's runs publish: group commit
// shares a commit between them.
func BenchmarkPublishParallel(b *testing.B) {
	s := openFile(b, WithSync(SyncNormal))
	ctx := context.Background()
	ev := event.Event{Type: event.TypeTaskStatus, Data: benchEventData, TaskID: "3f1d2c9e-5b7a-4c1e-9d2f-0a6b8c4e7f10", Owner: "alice", Time: 1}
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Publish(ctx, ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
