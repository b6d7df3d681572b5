package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// BenchmarkTaskEvents is sqlitestore's: one task through the store steps
// that log its events (insert, claim with its task_status, finish),
// which also queue the events' webhook deliveries; subs=none: nobody
// subscribed, subs=owner: the owner subscribed to every event. Besides
// the wall time (each step one round trip), it reports the CPU Redis
// spent per task (INFO cpu: the whole server's, so run it on a Redis
// nothing else uses). Run with:
//
//	TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench TaskEvents ./internal/store/redisstore/
func BenchmarkTaskEvents(b *testing.B) {
	for _, subs := range []string{"none", "owner"} {
		b.Run("subs="+subs, func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			if subs == "owner" {
				mustOK(b, s.WebhookSubInsert(ctx, &store.WebhookSub{ID: "wh-1", Owner: "bench",
					URL: "https://example.com/hook", Secret: "whsec_c2VjcmV0", CreatedAt: benchNow}))
			}
			i := 0
			start := redisCPU(b, s)
			for b.Loop() {
				taskEvents(ctx, b, s, i)
				i++
			}
			b.ReportMetric(float64(redisCPU(b, s)-start)/float64(b.N), "redis-cpu-ns/op")
		})
	}
}

// redisCPU is the CPU time the Redis server has used so far.
func redisCPU(b *testing.B, s *Store) time.Duration {
	b.Helper()
	info, err := s.rdb.InfoMap(context.Background(), "cpu").Result()
	mustOK(b, err)
	var total float64
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(info["CPU"][k], 64)
		mustOK(b, err)
		total += v
	}
	return time.Duration(total * float64(time.Second))
}

// taskEvents runs task number i through st's evented steps.
func taskEvents(ctx context.Context, b *testing.B, st store.Store, i int) {
	id := fmt.Sprintf("t-%d", i)
	evs, err := event.Pending(&task.Task{ID: id, Owner: "bench", Status: task.StatusPending})
	mustOK(b, err)
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
