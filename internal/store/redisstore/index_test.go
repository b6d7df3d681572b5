package redisstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TestIndexesConsistent runs a random workload from several goroutines and
// then checks every index against the task hashes: the store keeps its
// indexes by hand, so a script that forgets one shows up here.
func TestIndexesConsistent(t *testing.T) {
	s := open(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() { workload(t, s, fmt.Sprintf("w%d", w), rand.New(rand.NewPCG(uint64(w), 42)), 150) })
	}
	wg.Wait()
	checkIndexes(t, s)
}

// workload makes n random calls; conflicts and empty queues are expected.
func workload(t *testing.T, s *Store, name string, r *rand.Rand, n int) {
	ctx := t.Context()
	owners := []string{"", "alice", "bob"}
	var mine []string
	for i := range n {
		now := at(i)
		var err error
		switch op := r.IntN(10); {
		case op < 4 || len(mine) == 0:
			var tk *task.Task
			tk, err = s.TaskInsert(ctx, &store.TaskInsertParams{ID: fmt.Sprintf("%s-%d", name, i), Owner: owners[r.IntN(3)],
				Priority: r.IntN(3), Workflow: []byte(`{}`), Checkpoints: [][]string{nil, {"a"}, {"b", "a"}}[r.IntN(3)],
				Cap: []*store.CapParams{nil, {Key: "c1", Data: []byte(`{}`), Instances: []string{"i:0", "i:1"}},
					{Key: "c2", Data: []byte(`{}`), Instances: []string{"i:2"}}}[r.IntN(3)],
				Now: now.Add(time.Duration(r.IntN(3)) * time.Second)})
			if err == nil {
				mine = append(mine, tk.ID)
			}
		case op < 6:
			_, err = s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i:" + strconv.Itoa(r.IntN(3)), LeaseOwner: "r",
				LeaseTTL: time.Duration(r.IntN(60)) * time.Second, Checkpoint: []string{"", "a", "a|b"}[r.IntN(3)],
				WarmWindow: time.Duration(r.IntN(2)) * time.Second, Now: now})
		default:
			err = randomChange(ctx, s, r, mine[r.IntN(len(mine))], now)
		}
		if err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("op %d: %v", i, err)
		}
	}
}

// randomChange moves task id in one of the ways a run ends or pauses.
func randomChange(ctx context.Context, s *Store, r *rand.Rand, id string, now time.Time) error {
	var err error
	switch r.IntN(5) {
	case 0:
		err = s.TaskProgress(ctx, &store.TaskProgressParams{ID: id, Progress: r.IntN(120), Now: now})
	case 1:
		_, err = s.TaskRequeue(ctx, &store.TaskRequeueParams{ID: id, RefundAttempt: r.IntN(2) == 0, Now: now})
	case 2:
		_, err = s.TaskRequestCancel(ctx, &store.TaskCancelParams{ID: id, Now: now})
	case 3:
		err = s.TaskRenewLease(ctx, &store.TaskLeaseParams{ID: id, LeaseOwner: "r", LeaseTTL: time.Minute, Now: now})
	default:
		to := []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusCancelled}[r.IntN(3)]
		_, err = s.TaskFinish(ctx, &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusPending, task.StatusRunning},
			To: to, Result: &task.Result{Files: []string{"f"}}, Now: now})
	}
	return err
}

// checkIndexes rebuilds every index from the task hashes and compares.
func checkIndexes(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	rdb := admin(t)
	keys, err := redistest.Keys(ctx, rdb, s.keys.task(""))
	mustOK(t, err)
	want := map[string]map[string]float64{} // index key -> member -> score
	add := func(key, member string, score float64) {
		if want[key] == nil {
			want[key] = map[string]float64{}
		}
		want[key][member] = score
	}
	counts := map[task.Status]int{}
	pendingOwners, running := map[string]bool{}, map[string]int{}
	for _, k := range keys {
		m, err := rdb.HGetAll(ctx, k).Result()
		mustOK(t, err)
		tk, err := decodeTask(m)
		mustOK(t, err)
		counts[tk.Status]++
		lm, created := fmt.Sprintf("%016x", tk.Seq)+tk.ID, float64(ms(tk.CreatedAt))
		for _, list := range []string{allTasks, string(tk.Status)} {
			add(s.keys.list(list), lm, created)
			if tk.Owner != "" {
				add(s.keys.ownerList(list, tk.Owner), lm, created)
			}
		}
		switch tk.Status {
		case task.StatusPending:
			qm := queueMemberPrefix(store.Rank(tk.Priority, tk.CreatedAt, 0)) + fmt.Sprintf("%016x", tk.Seq) + tk.ID
			add(s.keys.queue(), qm, 0)
			add(s.keys.ownerQueue(tk.Owner), qm, 0)
			add(s.keys.capQueue(tk.Owner, tk.CapKey), qm, 0)
			add(s.keys.ownerCaps(tk.Owner), tk.CapKey, 0)
			if ck := task.CheckpointKey(tk.Checkpoints); ck != "" {
				add(s.keys.capCkptQueue(tk.Owner, tk.CapKey, ck), qm, 0)
			}
			pendingOwners[tk.Owner] = true
		case task.StatusRunning:
			running[tk.Owner]++
			add(s.keys.leases(), tk.ID, float64(ms(tk.LeaseExpiresAt)))
			add(s.keys.runningOn(tk.InstanceID), tk.ID, 0)
		}
	}
	served := map[string]float64{}
	for owner, n := range rdb.HGetAll(ctx, s.keys.ownerServed()).Val() {
		served[owner], _ = strconv.ParseFloat(n, 64)
	}
	for owner := range pendingOwners {
		add(s.keys.queueOwners(), owner, float64(running[owner])*(1<<33)+served[owner])
	}
	for key, members := range want {
		checkIndex(t, s, key, members)
	}
	gotRunning := map[string]int{}
	for owner, n := range rdb.HGetAll(ctx, s.keys.ownerRunning()).Val() {
		gotRunning[owner], _ = strconv.Atoi(n)
	}
	if d := gocmp.Diff(running, gotRunning, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("running counts by owner (-want +got):\n%s", d)
	}
	checkNoStrayIndexes(t, s, want)
	got, err := s.TaskCounts(ctx)
	mustOK(t, err)
	for _, st := range task.AllStatuses {
		if got[st] != counts[st] {
			t.Errorf("TaskCounts[%s] = %d, want %d", st, got[st], counts[st])
		}
	}
	t.Logf("checked %d tasks: %v", len(keys), counts)
}

// checkIndex compares one index (ZSET or SET) with its expected members.
func checkIndex(t *testing.T, s *Store, key string, want map[string]float64) {
	t.Helper()
	got := map[string]float64{}
	rdb := admin(t)
	if typ := rdb.Type(t.Context(), key).Val(); typ == "set" {
		for _, m := range rdb.SMembers(t.Context(), key).Val() {
			got[m] = 0
		}
	} else {
		for _, z := range rdb.ZRangeWithScores(t.Context(), key, 0, -1).Val() {
			got[z.Member.(string)] = z.Score
		}
	}
	if d := gocmp.Diff(want, got); d != "" {
		t.Errorf("index %s (-want +got):\n%s", key, d)
	}
}

// checkNoStrayIndexes fails for a non-empty index nothing should be in.
func checkNoStrayIndexes(t *testing.T, s *Store, want map[string]map[string]float64) {
	t.Helper()
	for _, pattern := range []string{s.keys.list(""), s.keys.prefix + "owner:", s.keys.runningOn(""), s.keys.queue(),
		s.keys.ownerQueue(""), s.keys.prefix + "queue:ckpt:", s.keys.prefix + "queue:cap:", s.keys.prefix + "queue:capckpt:",
		s.keys.ownerCaps(""), s.keys.queueOwners(), s.keys.leases()} {
		keys, err := redistest.Keys(t.Context(), admin(t), pattern)
		mustOK(t, err)
		for _, k := range keys {
			if k == s.keys.ownerServed() || k == s.keys.servedSerial() || k == s.keys.capsVersion() {
				continue // bookkeeping, checked through the queue owners' scores
			}
			if _, ok := want[k]; !ok {
				t.Errorf("stray index %s (want only %v)", k, slices.Sorted(maps.Keys(want)))
			}
		}
	}
}
