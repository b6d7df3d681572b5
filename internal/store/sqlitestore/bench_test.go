package sqlitestore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Run with: go test -run '^$' -bench . -timeout 30m ./internal/store/sqlitestore
// The 1M backlogs take a few seconds each to seed.

var benchNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// benchWorkflow is a ~2 KB API-format prompt, the size of a plain txt2img graph.
var benchWorkflow = []byte(`{"3":{"class_type":"KSampler","inputs":{"seed":1,"steps":20,"cfg":7,` +
	`"sampler_name":"euler","scheduler":"normal","denoise":1,"model":["4",0],"positive":["6",0],` +
	`"negative":["7",0],"latent_image":["5",0]}},"4":{"class_type":"CheckpointLoaderSimple",` +
	`"inputs":{"ckpt_name":"sd_xl_base_1.0.safetensors"}},"5":{"class_type":"EmptyLatentImage",` +
	`"inputs":{"width":1024,"height":1024,"batch_size":1}},"6":{"class_type":"CLIPTextEncode",` +
	`"inputs":{"text":"` + strings.Repeat("a photo of a cat, ", 60) + `","clip":["4",1]}},` +
	`"7":{"class_type":"CLIPTextEncode","inputs":{"text":"blurry","clip":["4",1]}},` +
	`"8":{"class_type":"VAEDecode","inputs":{"samples":["3",0],"vae":["4",2]}},` +
	`"9":{"class_type":"SaveImage","inputs":{"filename_prefix":"ComfyUI","images":["8",0]}}}`)

var syncModes = []Sync{SyncFull, SyncNormal}

// cpuPerOp reports the CPU time the whole process spends per iteration, as
// cpu-ns/op, beside the wall time: on a shared machine whose other work
// steals the cores, it varies much less. Call it right before the loop and
// call what it returns right after.
func cpuPerOp(b *testing.B) func() {
	start, ok := processCPU()
	return func() {
		end, _ := processCPU()
		if ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// seedBody is the workflow of seeded tasks. It is small so that seeding a
// million tasks takes seconds; the claim path reads one body either way.
var seedBody = []byte(`{"9":{"class_type":"SaveImage","inputs":{"filename_prefix":"ComfyUI","images":["8",0]}}}`)

// seedTasks bulk-inserts n tasks named prefix-1..prefix-n in one statement,
// with priorities 0..2 ranked as with aging off; running ones are leased by "bench" on "bench:1".
// It then checkpoints the WAL, so no benchmark pays for copying the seed.
func seedTasks(b *testing.B, s *Store, prefix string, n int, status task.Status) {
	b.Helper()
	ctx := context.Background()
	now := ms(benchNow)
	_, err := s.write.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO tasks (id, owner, status, priority, rank, instance_id, attempts, lease_owner, lease_expires_at, created_at, updated_at)
		SELECT ? || '-' || i, 'bench', ?, i % 3, ? + i - (i % 3) * ?, iif(? = 'running', 'bench:1', ''), iif(? = 'running', 1, 0),
			iif(? = 'running', 'bench', ''), iif(? = 'running', ? + 60000, 0), ? + i, ? + i FROM n`,
		n, prefix, status, now, -store.Rank(1, time.UnixMilli(0), 0), status, status, status, status, now, now, now)
	if err != nil {
		b.Fatalf("seed tasks: %v", err)
	}
	_, err = s.write.ExecContext(ctx, `INSERT INTO task_bodies (seq, workflow)
		SELECT seq, ? FROM tasks WHERE seq > coalesce((SELECT max(seq) FROM task_bodies), 0)`, seedBody)
	if err != nil {
		b.Fatalf("seed bodies: %v", err)
	}
	if _, err := s.write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatalf("checkpoint: %v", err)
	}
}

// BenchmarkClaim claims one task at a time from a backlog of pending tasks.
func BenchmarkClaim(b *testing.B) {
	for _, mode := range syncModes {
		for _, backlog := range []int{100_000, 1_000_000} {
			b.Run(fmt.Sprintf("sync=%s/backlog=%d", mode, backlog), func(b *testing.B) {
				s := openFile(b, WithSync(mode))
				seedTasks(b, s, "p", backlog, task.StatusPending)
				p := &store.TaskClaimParams{InstanceID: "10.0.0.1:8001", LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow}
				ctx := context.Background()
				done := cpuPerOp(b)
				for b.Loop() {
					if _, err := s.TaskClaim(ctx, p); err != nil {
						b.Fatalf("TaskClaim: %v (backlog exhausted? lower -benchtime)", err)
					}
				}
				done()
			})
		}
	}
}

// BenchmarkClaimFairWarm claims with fair share between many owners and
// warm placement on: the instance has m1 loaded, the queue mixes 4 models.
func BenchmarkClaimFairWarm(b *testing.B) {
	for _, owners := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("backlog=100000/owners=%d", owners), func(b *testing.B) {
			s := openFile(b)
			seedTasks(b, s, "p", 100_000, task.StatusPending)
			ctx := context.Background()
			_, err := s.write.ExecContext(ctx, `UPDATE tasks SET owner = 'bench-' || (seq % ?), ckpt_key = 'm' || (seq % 4),
				rank = created_at - priority * 60000`, owners)
			if err != nil {
				b.Fatal(err)
			}
			_, err = s.write.ExecContext(ctx, `DELETE FROM queue_owners;
				INSERT INTO queue_owners (owner, pending, running) SELECT owner, count(*), 0 FROM tasks GROUP BY owner`)
			if err != nil {
				b.Fatal(err)
			}
			p := &store.TaskClaimParams{InstanceID: "10.0.0.1:8001", LeaseOwner: "bench", LeaseTTL: time.Minute,
				Checkpoint: "m1", WarmWindow: 30 * time.Second, Now: benchNow}
			done := cpuPerOp(b)
			for b.Loop() {
				if _, err := s.TaskClaim(ctx, p); err != nil {
					b.Fatalf("TaskClaim: %v (backlog exhausted? lower -benchtime)", err)
				}
			}
			done()
		})
	}
}

// BenchmarkClaimParallel claims from many goroutines: the single writer
// serialises them, so this measures contention overhead.
func BenchmarkClaimParallel(b *testing.B) {
	s := openFile(b, WithSync(SyncFull))
	seedTasks(b, s, "p", 1_000_000, task.StatusPending)
	p := &store.TaskClaimParams{InstanceID: "10.0.0.1:8001", LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow}
	b.ResetTimer()
	done := cpuPerOp(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.TaskClaim(context.Background(), p); err != nil {
				b.Errorf("TaskClaim: %v", err)
				return
			}
		}
	})
	done()
}

// BenchmarkFinish completes running tasks with a two-output result.
func BenchmarkFinish(b *testing.B) {
	result := &task.Result{
		Files: []string{"http://gw/files/a/ComfyUI_00001_.png", "http://gw/files/b/ComfyUI_00002_.png"},
		Outputs: map[string][]task.Output{"9": {
			{URL: "http://gw/files/a/ComfyUI_00001_.png", Filename: "ComfyUI_00001_.png", Type: "images", NodeID: "9", FileID: "a"},
			{URL: "http://gw/files/b/ComfyUI_00002_.png", Filename: "ComfyUI_00002_.png", Type: "images", NodeID: "9", FileID: "b"},
		}},
	}
	for _, mode := range syncModes {
		b.Run("sync="+string(mode), func(b *testing.B) {
			s := openFile(b, WithSync(mode))
			seedTasks(b, s, "r", b.N, task.StatusRunning)
			ctx := context.Background()
			b.ResetTimer()
			done := cpuPerOp(b)
			defer done()
			for i := range b.N {
				_, err := s.TaskFinish(ctx, &store.TaskFinishParams{
					ID: fmt.Sprintf("r-%d", i+1), From: []task.Status{task.StatusRunning}, To: task.StatusCompleted,
					LeaseOwner: "bench", Result: result, Now: benchNow,
				})
				if err != nil {
					b.Fatalf("TaskFinish: %v", err)
				}
			}
		})
	}
}

// BenchmarkInsert submits tasks with a 2 KB workflow.
func BenchmarkInsert(b *testing.B) {
	for _, mode := range syncModes {
		b.Run("sync="+string(mode), func(b *testing.B) {
			s := openFile(b, WithSync(mode))
			ctx := context.Background()
			params := []byte(`{"3.seed":42}`)
			done := cpuPerOp(b)
			defer done()
			for b.Loop() {
				_, err := s.TaskInsert(ctx, &store.TaskInsertParams{
					ID: uuid.NewString(), Owner: "bench", Workflow: benchWorkflow, Params: params, Now: benchNow,
				})
				if err != nil {
					b.Fatalf("TaskInsert: %v", err)
				}
			}
		})
	}
}

// BenchmarkQueuePosition reads the position of the first and of the last
// pending task in a 1M backlog: a count over the claim index.
func BenchmarkQueuePosition(b *testing.B) {
	s := openFile(b)
	const backlog = 1_000_000
	seedTasks(b, s, "p", backlog, task.StatusPending)
	// Priority is i%3: p-2 is first (priority 2, lowest seq), p-999999 last (priority 0, highest seq).
	for _, id := range []string{"p-2", fmt.Sprintf("p-%d", backlog-1)} {
		b.Run("task="+id, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.TaskQueuePosition(ctx, id); err != nil {
					b.Fatalf("TaskQueuePosition: %v", err)
				}
			}
		})
	}
}

// BenchmarkList reads the first page of pending tasks, with its total, from a
// 1M backlog.
func BenchmarkList(b *testing.B) {
	s := openFile(b)
	seedTasks(b, s, "p", 1_000_000, task.StatusPending)
	pending := []task.Status{task.StatusPending}
	cases := map[string]*store.TaskListParams{
		"pending":                    {Statuses: pending},
		"pending/offset=500000":      {Statuses: pending, Offset: 500_000},
		"pending/offset=999980":      {Statuses: pending, Offset: 999_980},
		"pending+running":            {Statuses: []task.Status{task.StatusPending, task.StatusRunning}},
		"pending+running/offset=1e4": {Statuses: []task.Status{task.StatusPending, task.StatusRunning}, Offset: 10_000},
		"all":                        {},
	}
	for name, p := range cases {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.TaskList(context.Background(), p); err != nil {
					b.Fatalf("TaskList: %v", err)
				}
			}
		})
	}
}

// BenchmarkQueuePositionsPage reads the positions of a page of pending
// tasks (the 100 newest, the first page of GET /api/tasks) in a 20k
// backlog: one by one, as estimates did, and at once.
func BenchmarkQueuePositionsPage(b *testing.B) {
	s := openFile(b)
	const backlog = 20_000
	seedTasks(b, s, "p", backlog, task.StatusPending)
	page := make([]string, 100)
	for i := range page {
		page[i] = fmt.Sprintf("p-%d", backlog-1-i)
	}
	ctx := context.Background()
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			for _, id := range page {
				if _, err := s.TaskQueuePosition(ctx, id); err != nil {
					b.Fatalf("TaskQueuePosition: %v", err)
				}
			}
		}
	})
	b.Run("at-once", func(b *testing.B) {
		for b.Loop() {
			got, err := s.TaskQueuePositions(ctx, page)
			if err != nil || len(got) != len(page) {
				b.Fatalf("TaskQueuePositions: %d positions, %v", len(got), err)
			}
		}
	})
}

// BenchmarkSubmitToIdle is a task submitted while an instance waits for
// work, on an empty queue: an insert then a claim of its own (two), or the
// claim in the insert's transaction (one, TaskInsertClaim). The task's
// events are logged with the insert, as the API does.
func BenchmarkSubmitToIdle(b *testing.B) {
	for _, way := range []string{"two", "one"} {
		b.Run(way, func(b *testing.B) {
			s := openFile(b, WithSync(SyncNormal))
			ctx := context.Background()
			params := []byte(`{"3.seed":42}`)
			claim := &store.TaskClaimParams{InstanceID: "10.0.0.1:8001", LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow}
			done := cpuPerOp(b)
			defer done()
			for b.Loop() {
				id := uuid.NewString()
				evs, err := event.Pending(&task.Task{ID: id, Owner: "bench", Status: task.StatusPending})
				if err != nil {
					b.Fatal(err)
				}
				p := &store.TaskInsertParams{ID: id, Owner: "bench", Workflow: benchWorkflow, Params: params, Now: benchNow, Events: evs}
				var claimed *task.Task
				if way == "two" {
					if _, err = s.TaskInsert(ctx, p); err == nil {
						claimed, err = s.TaskClaim(ctx, claim)
					}
				} else {
					_, claimed, err = s.TaskInsertClaim(ctx, p, claim)
				}
				if err != nil || claimed == nil || claimed.ID != id {
					b.Fatalf("claimed %v: %v", claimed, err)
				}
			}
		})
	}
}
