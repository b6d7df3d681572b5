package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Run with:
//
//	TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench . ./internal/store/redisstore/
//
// The shapes follow sqlitestore's benchmarks. A 1M backlog of 2 KB
// workflows takes a few GB of Redis memory and some seconds to seed.

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

var benchClaim = &store.TaskClaimParams{InstanceID: "10.0.0.1:8001", LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow}

// seedBatch is how many scripts one pipeline carries while seeding.
const seedBatch = 1000

// seedTasks inserts n pending tasks named prefix-1..prefix-n, priorities
// 0..2, through the insert script in pipelines, and logs the memory a task
// takes.
func seedTasks(b *testing.B, s *Store, prefix string, n int) {
	b.Helper()
	seedMixed(b, s, prefix, n, 1, 0)
}

// seedMixed is seedTasks with owners bench-0..bench-(owners-1) taking turns
// and, when models > 0, checkpoints m0..m(models-1) taking turns.
func seedMixed(b *testing.B, s *Store, prefix string, n, owners, models int) {
	b.Helper()
	ctx := context.Background()
	before := usedMemory(b, s)
	mustOK(b, insertTaskScript.Load(ctx, s.rdb).Err())
	for start := 1; start <= n; start += seedBatch {
		pipe := s.rdb.Pipeline()
		for i := start; i < min(start+seedBatch, n+1); i++ {
			p := &store.TaskInsertParams{
				ID: fmt.Sprintf("%s-%d", prefix, i), Owner: "bench", Priority: i % 3,
				Workflow: benchWorkflow, Now: benchNow.Add(time.Duration(i) * time.Millisecond),
			}
			if owners > 1 {
				p.Owner = fmt.Sprintf("bench-%d", i%owners)
			}
			if models > 0 {
				p.Checkpoints = []string{fmt.Sprintf("m%d", i%models)}
			}
			keys, args, err := s.insertArgs(p)
			mustOK(b, err)
			insertTaskScript.EvalSha(ctx, pipe, keys, args...)
		}
		_, err := pipe.Exec(ctx)
		mustOK(b, err)
	}
	if n >= 100_000 {
		b.Logf("seeded %d tasks: %d bytes of Redis memory per task", n, (usedMemory(b, s)-before)/int64(n))
	}
}

// claimAll claims n tasks in pipelines (seeding running tasks).
func claimAll(b *testing.B, s *Store, n int) {
	b.Helper()
	ctx := context.Background()
	mustOK(b, claimTaskScript.Load(ctx, s.rdb).Err())
	keys, args := s.claimArgs(benchClaim)
	for done := 0; done < n; done += seedBatch {
		pipe := s.rdb.Pipeline()
		for range min(seedBatch, n-done) {
			claimTaskScript.EvalSha(ctx, pipe, keys, args...)
		}
		_, err := pipe.Exec(ctx)
		mustOK(b, err)
	}
}

func usedMemory(b *testing.B, s *Store) int64 {
	b.Helper()
	info, err := s.rdb.InfoMap(context.Background(), "memory").Result()
	mustOK(b, err)
	n, _ := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	return n
}

// BenchmarkClaim claims one task at a time from a backlog of pending tasks.
func BenchmarkClaim(b *testing.B) {
	for _, backlog := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			s := open(b)
			seedTasks(b, s, "p", backlog)
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.TaskClaim(ctx, benchClaim); err != nil {
					b.Fatalf("TaskClaim: %v (backlog exhausted? lower -benchtime)", err)
				}
			}
		})
	}
}

// BenchmarkClaimFairWarm claims with fair share between many owners and
// warm placement on: the instance has m1 loaded, the queue mixes 4 models.
func BenchmarkClaimFairWarm(b *testing.B) {
	for _, owners := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("backlog=100000/owners=%d", owners), func(b *testing.B) {
			s := open(b)
			seedMixed(b, s, "p", 100_000, owners, 4)
			p := *benchClaim
			p.Checkpoint, p.WarmWindow = "m1", 30*time.Second
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.TaskClaim(ctx, &p); err != nil {
					b.Fatalf("TaskClaim: %v (backlog exhausted? lower -benchtime)", err)
				}
			}
		})
	}
}

// BenchmarkClaimParallel claims from many goroutines: Redis runs one
// script at a time, so this measures throughput over several connections.
func BenchmarkClaimParallel(b *testing.B) {
	s := open(b)
	seedTasks(b, s, "p", 1_000_000) // once: the sub-benchmark runs for each b.N
	b.Run("backlog=1000000", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.TaskClaim(context.Background(), benchClaim); err != nil {
					b.Errorf("TaskClaim: %v", err)
					return
				}
			}
		})
	})
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
	s := open(b)
	seedTasks(b, s, "r", b.N)
	claimAll(b, s, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		_, err := s.TaskFinish(ctx, &store.TaskFinishParams{
			ID: fmt.Sprintf("r-%d", i+1), From: []task.Status{task.StatusRunning}, To: task.StatusCompleted,
			LeaseOwner: "bench", Result: result, Now: benchNow,
		})
		if err != nil {
			b.Fatalf("TaskFinish: %v", err)
		}
	}
}

// BenchmarkInsert submits tasks with a 2 KB workflow.
func BenchmarkInsert(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	params := []byte(`{"3.seed":42}`)
	for b.Loop() {
		_, err := s.TaskInsert(ctx, &store.TaskInsertParams{
			ID: uuid.NewString(), Owner: "bench", Workflow: benchWorkflow, Params: params, Now: benchNow,
		})
		if err != nil {
			b.Fatalf("TaskInsert: %v", err)
		}
	}
}

// BenchmarkQueuePosition reads the position of the first and of the last
// pending task in a 1M backlog: a ZRANK.
func BenchmarkQueuePosition(b *testing.B) {
	s := open(b)
	const backlog = 1_000_000
	seedTasks(b, s, "p", backlog)
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

// BenchmarkList reads the first page of pending tasks, with its total, from
// a 1M backlog (plus a few running tasks), a page half way down, and the
// counts.
func BenchmarkList(b *testing.B) {
	s := open(b)
	seedTasks(b, s, "p", 1_000_000)
	claimAll(b, s, 10)
	cases := map[string]*store.TaskListParams{
		"pending":                       {Statuses: []task.Status{task.StatusPending}},
		"pending+running":               {Statuses: []task.Status{task.StatusPending, task.StatusRunning}},
		"all":                           {},
		"owner+2statuses":               {Owner: "bench", Statuses: []task.Status{task.StatusPending, task.StatusRunning}},
		"pending/offset=500000":         {Statuses: []task.Status{task.StatusPending}, Offset: 500_000},
		"pending+running/offset=500000": {Statuses: []task.Status{task.StatusPending, task.StatusRunning}, Offset: 500_000},
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
	b.Run("counts", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.TaskCounts(context.Background()); err != nil {
				b.Fatalf("TaskCounts: %v", err)
			}
		}
	})
}
