package sqlitestore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// The benchmarks in this file cover the rest of the gateway's per-task store
// traffic: progress, file records, the dispatcher's and the API's reads, and
// leases. They run with SyncNormal, the gateway's default (store.sync
// "normal"). Run with:
//
//	go test -run '^$' -bench 'Progress|TaskGet|ListRunning|Lease|FileInsert|InstanceList|TaskCounts|Lifecycle' ./internal/store/sqlitestore

// hotFleet is the number of simulated instances: the gateway's load test
// runs 16.
const hotFleet = 16

// openHot opens a SyncNormal store holding a backlog of pending tasks and
// one running task per instance of the fleet (instance "i-N", task "run-N").
func openHot(b *testing.B, backlog int) *Store {
	b.Helper()
	s := openFile(b, WithSync(SyncNormal))
	if backlog > 0 {
		seedTasks(b, s, "p", backlog, task.StatusPending)
	}
	ctx := context.Background()
	for i := range hotFleet {
		id := fmt.Sprintf("run-%d", i)
		if _, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: id, Owner: "bench", Priority: 100,
			Workflow: benchWorkflow, Params: []byte(`{"3.seed":42}`), Now: benchNow}); err != nil {
			b.Fatalf("TaskInsert: %v", err)
		}
		if _, err := s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: fmt.Sprintf("i-%d", i),
			LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow}); err != nil {
			b.Fatalf("TaskClaim: %v", err)
		}
		dev := instance.Device{Name: "cuda:0 NVIDIA GeForce RTX 4090", Type: "cuda", VRAMTotal: 1 << 34, VRAMFree: 1 << 33, ComfyUIVersion: "0.3.40"}
		if _, err := s.InstanceUpdate(ctx, &store.InstanceUpdateParams{ID: fmt.Sprintf("i-%d", i), Device: &dev,
			Alive: new(true), Busy: new(true), CurrentTaskID: &id}); err != nil {
			b.Fatalf("InstanceUpdate: %v", err)
		}
	}
	return s
}

// BenchmarkProgress raises the progress of running tasks, one at a time.
func BenchmarkProgress(b *testing.B) {
	s := openHot(b, 0)
	ctx := context.Background()
	p := &store.TaskProgressParams{}
	i := 0
	defer cpuPerOp(b)()
	for b.Loop() {
		// A later Now changes the row: SQLite skips writing an identical one.
		p.ID, p.Progress, p.Now = fmt.Sprintf("run-%d", i%hotFleet), i%99, benchNow.Add(time.Duration(i)*time.Millisecond)
		if err := s.TaskProgress(ctx, p); err != nil {
			b.Fatalf("TaskProgress: %v", err)
		}
		i++
	}
}

// BenchmarkTaskGet reads a whole running task (2 KB workflow) by id.
func BenchmarkTaskGet(b *testing.B) {
	s := openHot(b, 100_000)
	ctx := context.Background()
	i := 0
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := s.TaskGet(ctx, fmt.Sprintf("run-%d", i%hotFleet)); err != nil {
			b.Fatalf("TaskGet: %v", err)
		}
		i++
	}
}

// BenchmarkListRunningByInstance lists one instance's running task, as the
// dispatcher does when it reconciles an instance.
func BenchmarkListRunningByInstance(b *testing.B) {
	s := openHot(b, 100_000)
	ctx := context.Background()
	i := 0
	defer cpuPerOp(b)()
	for b.Loop() {
		tasks, err := s.TaskListRunning(ctx, &store.TaskListRunningParams{InstanceID: fmt.Sprintf("i-%d", i%hotFleet)})
		if err != nil || len(tasks) != 1 {
			b.Fatalf("TaskListRunning: %d tasks, %v", len(tasks), err)
		}
		i++
	}
}

// BenchmarkLeaseAcquire renews a held lease, as every replica does every few
// seconds per instance.
func BenchmarkLeaseAcquire(b *testing.B) {
	s := openHot(b, 0)
	ctx := context.Background()
	i := 0
	defer cpuPerOp(b)()
	for b.Loop() {
		ok, err := s.LeaseAcquire(ctx, &store.LeaseParams{Name: fmt.Sprintf("instance:i-%d", i%hotFleet),
			Holder: "replica-a", TTL: 15 * time.Second, Now: benchNow.Add(time.Duration(i) * time.Millisecond)})
		if err != nil || !ok {
			b.Fatalf("LeaseAcquire: %v, %v", ok, err)
		}
		i++
	}
}

// BenchmarkFileInsert records one output file.
func BenchmarkFileInsert(b *testing.B) {
	s := openHot(b, 0)
	ctx := context.Background()
	i := 0
	defer cpuPerOp(b)()
	for b.Loop() {
		f := &file.File{ID: fmt.Sprintf("f-%d", i), Owner: "bench", TaskID: "run-1", NodeID: "9",
			Filename: "ComfyUI_00001_.png", ContentType: "image/png", Size: 1 << 20, CreatedAt: benchNow}
		if err := s.FileInsert(ctx, f); err != nil {
			b.Fatalf("FileInsert: %v", err)
		}
		i++
	}
}

// BenchmarkInstanceList reads the state of the whole fleet.
func BenchmarkInstanceList(b *testing.B) {
	s := openHot(b, 0)
	ctx := context.Background()
	defer cpuPerOp(b)()
	for b.Loop() {
		if list, err := s.InstanceList(ctx); err != nil || len(list) != hotFleet {
			b.Fatalf("InstanceList: %d, %v", len(list), err)
		}
	}
}

// BenchmarkTaskCounts reads the counts by status.
func BenchmarkTaskCounts(b *testing.B) {
	s := openHot(b, 0)
	ctx := context.Background()
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := s.TaskCounts(ctx); err != nil {
			b.Fatalf("TaskCounts: %v", err)
		}
	}
}

// BenchmarkLifecycle is one zero-duration task through the store as the
// gateway drives it: insert (2 KB workflow), claim, one progress, one output
// file, finish with a result, and a read of the finished task.
func BenchmarkLifecycle(b *testing.B) {
	for _, mode := range syncModes {
		b.Run("sync="+string(mode), func(b *testing.B) {
			s := openFile(b, WithSync(mode))
			ctx := context.Background()
			i := 0
			defer cpuPerOp(b)()
			for b.Loop() {
				lifecycle(ctx, b, s, i)
				i++
			}
		})
	}
}

// BenchmarkLifecycleCancelable is BenchmarkLifecycle (SyncNormal) with a
// cancelable context, as the gateway's calls have: request and loop
// contexts.
func BenchmarkLifecycleCancelable(b *testing.B) {
	s := openFile(b, WithSync(SyncNormal))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	i := 0
	defer cpuPerOp(b)()
	for b.Loop() {
		lifecycle(ctx, b, s, i)
		i++
	}
}

// lifecycle runs task number i through the store.
func lifecycle(ctx context.Context, b *testing.B, s *Store, i int) {
	id, fileID := fmt.Sprintf("t-%d", i), fmt.Sprintf("f-%d", i)
	if _, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: id, Owner: "bench", Workflow: benchWorkflow,
		Params: []byte(`{"3.seed":42}`), Now: benchNow}); err != nil {
		b.Fatalf("TaskInsert: %v", err)
	}
	tk, err := s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i-1", LeaseOwner: "bench", LeaseTTL: time.Minute, Now: benchNow})
	if err != nil || tk.ID != id {
		b.Fatalf("TaskClaim: %v", err)
	}
	if err := s.TaskProgress(ctx, &store.TaskProgressParams{ID: id, Progress: 50, Now: benchNow}); err != nil {
		b.Fatalf("TaskProgress: %v", err)
	}
	url := "http://gw/files/" + fileID + "/ComfyUI_00001_.png"
	if err := s.FileInsert(ctx, &file.File{ID: fileID, Owner: "bench", TaskID: id, NodeID: "9",
		Filename: "ComfyUI_00001_.png", ContentType: "image/png", Size: 1 << 20, CreatedAt: benchNow}); err != nil {
		b.Fatalf("FileInsert: %v", err)
	}
	result := &task.Result{Files: []string{url}, Outputs: map[string][]task.Output{
		"9": {{URL: url, Filename: "ComfyUI_00001_.png", Type: "images", NodeID: "9", FileID: fileID}}}}
	if _, err := s.TaskFinish(ctx, &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusRunning},
		To: task.StatusCompleted, LeaseOwner: "bench", Result: result, Now: benchNow}); err != nil {
		b.Fatalf("TaskFinish: %v", err)
	}
	if _, err := s.TaskGet(ctx, id); err != nil {
		b.Fatalf("TaskGet: %v", err)
	}
}
