package redisstore

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
