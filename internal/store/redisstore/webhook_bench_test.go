package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// BenchmarkTaskEvents is sqlitestore's: one task through the store steps
// that log its events (insert, claim with its task_status running and the
// idle instance's instance_status, as the dispatcher claims, finish),
// which also queue the events' webhook deliveries; subs=none: nobody
// subscribed, subs=owner: the owner subscribed to every event;
// claim=own: the claim is a step of its own, claim=submit: the insert
// claims (TaskInsertClaim, an instance ready at submit). Besides the
// wall time, it reports the CPU Redis spent per task (INFO cpu: the whole
// server's, so run it on a Redis nothing else uses). Run with:
//
//	TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench TaskEvents ./internal/store/redisstore/
func BenchmarkTaskEvents(b *testing.B) {
	for _, subs := range []string{"none", "owner"} {
		for _, atSubmit := range []bool{false, true} {
			claim := "own"
			if atSubmit {
				claim = "submit"
			}
			b.Run("subs="+subs+"/claim="+claim, func(b *testing.B) {
				s := open(b)
				ctx := context.Background()
				if subs == "owner" {
					mustOK(b, s.WebhookSubInsert(ctx, &store.WebhookSub{ID: "wh-1", Owner: "bench",
						URL: "https://example.com/hook", Secret: "whsec_c2VjcmV0", CreatedAt: benchNow}))
				}
				i := 0
				start := redisCPU(b, s)
				for b.Loop() {
					taskEvents(ctx, b, s, i, atSubmit)
					i++
				}
				b.ReportMetric(float64(redisCPU(b, s)-start)/float64(b.N), "redis-cpu-ns/op")
			})
		}
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

// taskEvents runs task number i through st's evented steps, the claim
// in the insert's step when atSubmit.
func taskEvents(ctx context.Context, b *testing.B, st store.Store, i int, atSubmit bool) {
	id := fmt.Sprintf("t-%d", i)
	evs, err := event.Pending(&task.Task{ID: id, Owner: "bench", Status: task.StatusPending})
	mustOK(b, err)
	ins := &store.TaskInsertParams{ID: id, Owner: "bench", Workflow: benchWorkflow,
		Params: []byte(`{"3.seed":42}`), Now: benchNow, Events: evs}
	claim := benchClaimLogged()
	var tk *task.Task
	if atSubmit {
		_, tk, err = st.TaskInsertClaim(ctx, ins, claim)
	} else {
		if _, err := st.TaskInsert(ctx, ins); err != nil {
			b.Fatalf("TaskInsert: %v", err)
		}
		tk, err = st.TaskClaim(ctx, claim)
	}
	if err != nil || tk == nil || tk.ID != id {
		b.Fatalf("claim: %v, %v", tk, err)
	}
	url := "http://gw/files/f-" + id + "/ComfyUI_00001_.png"
	result := &task.Result{Files: []string{url}, Outputs: map[string][]task.Output{
		"9": {{URL: url, Filename: "ComfyUI_00001_.png", Type: "images", NodeID: "9", FileID: "f-" + id}}}}
	if _, err := st.TaskFinish(ctx, &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusRunning},
		To: task.StatusCompleted, LeaseOwner: "bench", Result: result, Now: benchNow}); err != nil {
		b.Fatalf("TaskFinish: %v", err)
	}
}

// benchClaimLogged is a claim for an idle instance as the dispatcher makes
// it: it logs the claimed task's task_status running and the instance's
// instance_status busy.
func benchClaimLogged() *store.TaskClaimParams {
	return &store.TaskClaimParams{InstanceID: "i-1", LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow,
		LogRunning: true, Instance: &instance.State{ID: "i-1", Alive: true, Enabled: true}}
}
