package sqlitestore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// BenchmarkTaskEvents is one task through the store steps that log its
// events, as the gateway makes them: the insert with its task_status and
// task_queued, the claim with its task_status running, and the finish
// with its final events. Those steps also queue the events' webhook
// deliveries. subs=none: nobody subscribed (what every gateway pays); subs=owner: the
// owner subscribed to every event (three deliveries a task). Run with:
//
//	go test -run '^$' -bench TaskEvents ./internal/store/sqlitestore
func BenchmarkTaskEvents(b *testing.B) {
	for _, subs := range []string{"none", "owner"} {
		b.Run("subs="+subs, func(b *testing.B) {
			s := openFile(b, WithSync(SyncNormal))
			ctx := context.Background()
			if subs == "owner" {
				if err := s.WebhookSubInsert(ctx, &store.WebhookSub{ID: "wh-1", Owner: "bench",
					URL: "https://example.com/hook", Secret: "whsec_c2VjcmV0", CreatedAt: benchNow}); err != nil {
					b.Fatalf("WebhookSubInsert: %v", err)
				}
			}
			i := 0
			defer cpuPerOp(b)()
			for b.Loop() {
				taskEvents(ctx, b, s, i)
				i++
			}
		})
	}
}

// taskEvents runs task number i through st's evented steps.
func taskEvents(ctx context.Context, b *testing.B, st store.Store, i int) {
	id := fmt.Sprintf("t-%d", i)
	evs, err := event.Pending(&task.Task{ID: id, Owner: "bench", Status: task.StatusPending})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.TaskInsert(ctx, &store.TaskInsertParams{ID: id, Owner: "bench", Workflow: benchWorkflow,
		Params: []byte(`{"3.seed":42}`), Now: benchNow, Events: evs}); err != nil {
		b.Fatalf("TaskInsert: %v", err)
	}
	tk, err := st.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i-1", LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow,
		Events: func(t *task.Task) ([]event.Event, error) {
			ev, err := event.New(event.TypeTaskStatus, t, event.StatusOf(t))
			return []event.Event{ev}, err
		}})
	if err != nil || tk.ID != id {
		b.Fatalf("TaskClaim: %v", err)
	}
	url := "http://gw/files/f-" + id + "/ComfyUI_00001_.png"
	result := &task.Result{Files: []string{url}, Outputs: map[string][]task.Output{
		"9": {{URL: url, Filename: "ComfyUI_00001_.png", Type: "images", NodeID: "9", FileID: "f-" + id}}}}
	if _, err := st.TaskFinish(ctx, &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusRunning},
		To: task.StatusCompleted, LeaseOwner: "bench", Result: result, Now: benchNow}); err != nil {
		b.Fatalf("TaskFinish: %v", err)
	}
}
