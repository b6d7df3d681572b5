package redisstore

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TestMigrateCaps: tasks queued by a store before placement by capability
// (per-owner checkpoint queues, no requirement queues) are moved by the
// first claim, keep their order and warm placement, and leave no old key.
func TestMigrateCaps(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	rdb := admin(t)
	var ids []string
	for i, ckpts := range [][]string{nil, {"y.ckpt"}, nil} {
		tk, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: "t" + string(rune('0'+i)), Owner: "alice",
			Workflow: []byte(`{}`), Checkpoints: ckpts, Now: at(i)})
		mustOK(t, err)
		ids = append(ids, tk.ID)
	}
	// Rewind to the old layout.
	mustOK(t, rdb.Del(ctx, s.keys.capQueue("alice", ""), s.keys.ownerCaps("alice"),
		s.keys.capCkptQueue("alice", "", "y.ckpt")).Err())
	qm := rdb.HGet(ctx, s.keys.task(ids[1]), "qm").Val()
	mustOK(t, rdb.ZAdd(ctx, s.keys.ckptQueue("alice", "y.ckpt"), redis.Z{Member: qm}).Err())

	p := &store.TaskClaimParams{InstanceID: "i", LeaseOwner: "r", LeaseTTL: time.Minute, Checkpoint: "y.ckpt",
		WarmWindow: time.Hour, Now: at(10)}
	for _, want := range []string{ids[1], ids[0], ids[2]} {
		tk, err := s.TaskClaim(ctx, p)
		mustOK(t, err)
		if tk.ID != want {
			t.Errorf("claimed %s, want %s", tk.ID, want)
		}
		_, err = s.TaskFinish(ctx, &store.TaskFinishParams{ID: tk.ID, From: []task.Status{task.StatusRunning},
			To: task.StatusCompleted, Now: at(11)})
		mustOK(t, err)
	}
	if n := rdb.Exists(ctx, s.keys.ckptQueue("alice", "y.ckpt")).Val(); n != 0 {
		t.Errorf("the old checkpoint queue is still there")
	}
	checkIndexes(t, s)
}

// TestRetentionBackfill: tasks and files stored before the retention
// indexes existed are found by the first prune, pinned ones left out, and
// no key of the store gets a TTL.
func TestRetentionBackfill(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	rdb := admin(t)
	var done []string
	for i := range 3 {
		tk, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: "old" + string(rune('0'+i)), Owner: "alice",
			Workflow: []byte(`{}`), Now: at(i)})
		mustOK(t, err)
		_, err = s.TaskFinish(ctx, &store.TaskFinishParams{ID: tk.ID, From: []task.Status{task.StatusPending},
			To: task.StatusFailed, Now: at(10 + i)})
		mustOK(t, err)
		done = append(done, tk.ID)
	}
	_, err := s.TaskPin(ctx, &store.PinParams{ID: done[1], Pinned: true})
	mustOK(t, err)
	for i, id := range []string{"f-free", "f-of-pinned"} {
		mustOK(t, s.FileInsert(ctx, &file.File{ID: id, Owner: "alice", TaskID: done[i], Filename: "a.png", CreatedAt: at(20 + i)}))
	}
	// Rewind to a store from before retention.
	mustOK(t, rdb.Del(ctx, s.keys.retentionTasks(), s.keys.retentionFiles(), s.keys.retentionVersion()).Err())
	s.backfilled.Store(false)

	tasks, err := s.TaskExpired(ctx, &store.ExpiredParams{Before: at(100)})
	mustOK(t, err)
	if want := []string{done[0], done[2]}; !slices.Equal(tasks, want) {
		t.Errorf("expired tasks %v, want %v", tasks, want)
	}
	files, err := s.FileExpired(ctx, &store.ExpiredParams{Before: at(100)})
	mustOK(t, err)
	if want := []string{"f-free"}; !slices.Equal(files, want) {
		t.Errorf("expired files %v, want %v", files, want)
	}
	keys, err := rdb.Keys(ctx, s.keys.prefix+"*").Result()
	mustOK(t, err)
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl != -1 && !strings.HasPrefix(k, s.keys.prefix+"lease:") {
			t.Errorf("key %s has a TTL of %v", k, ttl)
		}
	}
}

// TestRetentionBackfillIsBounded: the backfill of a large store is many
// small scripts, not one that reads every record while Redis waits; a
// store part way through it, and two stores stepping at once, still end
// with every expired record found.
func TestRetentionBackfillIsBounded(t *testing.T) {
	s := open(t)
	other := NewFromClient(s.rdb, s.keys.prefix) // a second replica
	t.Cleanup(func() { other.Close() })
	ctx := t.Context()
	rdb := admin(t)
	const n = 300 // past the listpack size, so ZSCAN COUNT is honoured
	var want []string
	for i := range n {
		id := fmt.Sprintf("t%04d", i)
		_, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: id, Owner: "alice", Workflow: []byte(`{}`), Now: at(i)})
		mustOK(t, err)
		to := task.StatusCancelled
		if i%2 == 0 {
			to = task.StatusFailed
		}
		_, err = s.TaskFinish(ctx, &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusPending},
			To: to, Now: at(1000 + i)})
		mustOK(t, err)
		mustOK(t, s.FileInsert(ctx, &file.File{ID: "f" + id, Owner: "alice", TaskID: id, Filename: "a.png", CreatedAt: at(2000 + i)}))
		want = append(want, id)
	}
	mustOK(t, rdb.Del(ctx, s.keys.retentionTasks(), s.keys.retentionFiles(), s.keys.retentionVersion()).Err())
	s.backfillStep, other.backfillStep = 10, 10

	done, err := s.retentionBackfillStep(ctx)
	mustOK(t, err)
	if done {
		t.Fatal("the backfill of 300 tasks and 300 files completed in one step of 10")
	}
	if got := rdb.ZCard(ctx, s.keys.retentionTasks()).Val(); got > 100 {
		t.Errorf("one step of 10 indexed %d tasks", got)
	}
	steps := 1
	for !done {
		st := s
		if steps%2 == 1 {
			st = other
		}
		done, err = st.retentionBackfillStep(ctx)
		mustOK(t, err)
		if steps++; steps > 10*n {
			t.Fatal("the backfill does not complete")
		}
	}
	if steps < 20 {
		t.Errorf("the backfill took %d steps of 10 for 600 records", steps)
	}
	if rdb.Exists(ctx, s.keys.retentionBackfill()).Val() != 0 {
		t.Error("the backfill's cursor outlives the backfill")
	}
	tasks, err := s.TaskExpired(ctx, &store.ExpiredParams{Before: at(5000)})
	mustOK(t, err)
	if !slices.Equal(tasks, want) {
		t.Errorf("expired tasks: %d of %d, want all, oldest first", len(tasks), n)
	}
	files, err := s.FileExpired(ctx, &store.ExpiredParams{Before: at(5000)})
	mustOK(t, err)
	if len(files) != n || files[0] != "f"+want[0] || files[n-1] != "f"+want[n-1] {
		t.Errorf("expired files: %d of %d, want all, oldest first", len(files), n)
	}
}
