package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func queueCases() []testCase {
	return []testCase{
		{"Position", testQueuePosition},
		{"Positions", testQueuePositions},
		{"PositionNotPending", testQueuePositionNotPending},
		{"Head", testQueueHead},
		{"ClaimOrder", testClaimOrder},
		{"ClaimFields", testClaimFields},
		{"ClaimEmpty", testClaimEmpty},
		{"ClaimDisabled", testClaimDisabled},
		{"ClaimSkipsNonPending", testClaimSkipsNonPending},
		{"ClaimConcurrent", testClaimConcurrent},
		{"ClaimAging", testClaimAging},
		{"ClaimFairShare", testClaimFairShare},
		{"ClaimFairShareCounts", testClaimFairShareCounts},
		{"ClaimWarm", testClaimWarm},
		{"ClaimWarmKey", testClaimWarmKey},
		{"ClaimWarmKeepsFairShare", testClaimWarmKeepsFairShare},
		{"Requeue", testRequeue},
		{"RequeueKeepsPlace", testRequeueKeepsPlace},
		{"RequeueRefund", testRequeueRefund},
		{"RequeueRaisesProgress", testRequeueRaisesProgress},
		{"RequeueConflicts", testRequeueConflicts},
	}
}

// position reads a queue position that must exist.
func position(t *testing.T, s store.Store, id string) int {
	t.Helper()
	n, err := s.TaskQueuePosition(t.Context(), id)
	must(t, "TaskQueuePosition", err)
	return n
}

func testQueuePosition(t *testing.T, s store.Store) {
	prios := []int{0, 0, 5, 0, -1, 5}
	tasks := make([]string, len(prios))
	for i, p := range prios {
		tasks[i] = insert(t, s, store.TaskInsertParams{Priority: p, Now: at(i)}).ID
	}
	// Claim order: priority descending, then insertion order.
	order := []string{tasks[2], tasks[5], tasks[0], tasks[1], tasks[3], tasks[4]}
	for i, id := range order {
		if got := position(t, s, id); got != i+1 {
			t.Errorf("position of task %d = %d, want %d", slices.Index(tasks, id), got, i+1)
		}
	}
	claimID(t, s, order[0], "127.0.0.1:8001", at(10))
	for i, id := range order[1:] {
		if got := position(t, s, id); got != i+1 {
			t.Errorf("after a claim, position = %d, want %d", got, i+1)
		}
	}
}

// testQueuePositions: the positions read at once are those read one by
// one; tasks not pending, and unknown ids, are left out.
func testQueuePositions(t *testing.T, s store.Store) {
	prios := []int{0, 3, 0, 5, -2, 0, 3}
	ids := make([]string, len(prios))
	for i, p := range prios {
		ids[i] = insert(t, s, store.TaskInsertParams{Priority: p, Now: at(i)}).ID
	}
	claimID(t, s, ids[3], "127.0.0.1:8001", at(10)) // the head leaves the queue
	asked := []string{ids[0], ids[3], ids[4], ids[6], newID()}
	got, err := s.TaskQueuePositions(t.Context(), asked)
	must(t, "TaskQueuePositions", err)
	want := map[string]int{}
	for _, id := range []string{ids[0], ids[4], ids[6]} {
		want[id] = position(t, s, id)
	}
	diff(t, "positions read at once", want, got)
	none, err := s.TaskQueuePositions(t.Context(), nil)
	must(t, "TaskQueuePositions of none", err)
	if len(none) != 0 {
		t.Errorf("positions of no task: %v", none)
	}
}

func testQueuePositionNotPending(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	for st, tk := range byStatus {
		if st == task.StatusPending {
			continue
		}
		_, err := s.TaskQueuePosition(t.Context(), tk.ID)
		wantErr(t, "TaskQueuePosition of "+string(st), err, store.ErrConflict)
	}
	_, err := s.TaskQueuePosition(t.Context(), newID())
	wantErr(t, "TaskQueuePosition of missing", err, store.ErrNotFound)
}

// testQueueHead: the head lists pending tasks in the order of their
// positions, with their requirement, bounded by the limit; claimed and
// cancelled tasks leave it.
func testQueueHead(t *testing.T, s store.Store) {
	head := func(limit int) []store.QueuedTask {
		t.Helper()
		got, err := s.TaskQueueHead(t.Context(), &store.TaskQueueHeadParams{Limit: limit})
		must(t, "TaskQueueHead", err)
		return got
	}
	if got := head(10); len(got) != 0 {
		t.Fatalf("head of an empty queue = %v, want none", got)
	}
	caps := []string{"", "ka", "kb", "ka", ""}
	prios := []int{0, 0, 5, 0, -1}
	ids := make([]string, len(prios))
	for i, p := range prios {
		prm := store.TaskInsertParams{Priority: p, Now: at(i)}
		if caps[i] != "" {
			prm.Cap = &store.CapParams{Key: caps[i], Data: []byte(`{"k":"` + caps[i] + `"}`), Instances: []string{"127.0.0.1:8001"}}
		}
		ids[i] = insert(t, s, prm).ID
	}
	order := []int{2, 0, 1, 3, 4}
	want := make([]store.QueuedTask, len(order))
	for i, n := range order {
		want[i] = store.QueuedTask{ID: ids[n], CapKey: caps[n]}
		if p := position(t, s, ids[n]); p != i+1 {
			t.Fatalf("position of task %d = %d, want %d", n, p, i+1)
		}
	}
	if diff := cmp.Diff(want, head(10), diffOpts); diff != "" {
		t.Errorf("head (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[:2], head(2), diffOpts); diff != "" {
		t.Errorf("head of 2 (-want +got):\n%s", diff)
	}
	if got := head(0); len(got) != 1 || got[0] != want[0] {
		t.Errorf("head of limit 0 = %v, want the head alone", got)
	}
	claimID(t, s, ids[2], "127.0.0.1:8001", at(10))
	_, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: ids[1], Now: at(11)})
	must(t, "TaskRequestCancel", err)
	if diff := cmp.Diff([]store.QueuedTask{want[1], want[3], want[4]}, head(10), diffOpts); diff != "" {
		t.Errorf("head after a claim and a cancel (-want +got):\n%s", diff)
	}
}

// testClaimOrder: without aging, priority descending, then creation time,
// then Seq (pairs of tasks share a creation time).
func testClaimOrder(t *testing.T, s store.Store) {
	prios := []int{1, -2, 3, 1, 0, 3, -2, 0}
	tasks := make([]string, len(prios))
	for i, p := range prios {
		tasks[i] = insert(t, s, store.TaskInsertParams{Priority: p, Now: at(i / 2)}).ID
	}
	want := []string{tasks[2], tasks[5], tasks[0], tasks[3], tasks[4], tasks[7], tasks[1], tasks[6]}
	var got []string
	for range want {
		got = append(got, claim(t, s, "127.0.0.1:8001", at(20)).ID)
	}
	diff(t, "claim order", want, got)
	_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "x", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(21)})
	wantErr(t, "TaskClaim on drained queue", err, store.ErrNotFound)
}

func testClaimFields(t *testing.T, s store.Store) {
	in := insert(t, s, store.TaskInsertParams{
		Owner: "alice", Priority: 2, Params: []byte(`{"3.seed":1}`),
		Checkpoints: []string{"a.ckpt"}, Now: at(1),
	})
	got, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{
		InstanceID: "10.0.0.5:8003", LeaseOwner: replicaB, LeaseTTL: leaseTTL, Now: at(5),
	})
	must(t, "TaskClaim", err)
	want := *in
	want.Status = task.StatusRunning
	want.InstanceID = "10.0.0.5:8003"
	want.Attempts = 1
	want.StartedAt = at(5)
	want.UpdatedAt = at(5)
	want.LeaseOwner = replicaB
	want.LeaseExpiresAt = at(5).Add(leaseTTL)
	diff(t, "claimed task", &want, got)
	diff(t, "TaskGet after claim", &want, get(t, s, in.ID))
}

func testClaimEmpty(t *testing.T, s store.Store) {
	_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "x", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(0)})
	wantErr(t, "TaskClaim on empty store", err, store.ErrNotFound)
}

// testClaimDisabled: an instance stored as disabled claims nothing, alone
// or in an insert's step; enabled again, it claims.
func testClaimDisabled(t *testing.T, s store.Store) {
	const inst = "127.0.0.1:8001"
	off, on := false, true
	_, err := s.InstanceUpdate(t.Context(), &store.InstanceUpdateParams{ID: inst, Enabled: &off})
	must(t, "InstanceUpdate disabled", err)
	first := insert(t, s, store.TaskInsertParams{Now: at(1)})
	_, err = s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: inst, LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(2)})
	wantErr(t, "TaskClaim for a disabled instance", err, store.ErrNoneRunnable)
	ins, claimed, err := insertClaim(t, s, store.TaskInsertParams{Now: at(3)}, inst)
	must(t, "TaskInsertClaim for a disabled instance", err)
	if claimed != nil {
		t.Fatalf("TaskInsertClaim claimed %s for a disabled instance", claimed.ID)
	}
	if got := get(t, s, ins.ID); got.Status != task.StatusPending {
		t.Fatalf("inserted task is %s, want pending", got.Status)
	}
	if got := get(t, s, first.ID); got.Status != task.StatusPending {
		t.Fatalf("first task is %s, want pending", got.Status)
	}
	_, err = s.InstanceUpdate(t.Context(), &store.InstanceUpdateParams{ID: inst, Enabled: &on})
	must(t, "InstanceUpdate enabled", err)
	diff(t, "claimed once enabled", first.ID, claim(t, s, inst, at(4)).ID)
}

func testClaimSkipsNonPending(t *testing.T, s store.Store) {
	withStatus(t, s, "alice") // one pending task among four others
	pending := list(t, s, store.TaskListParams{Statuses: []task.Status{task.StatusPending}}).Items
	if len(pending) != 1 {
		t.Fatalf("%d pending tasks, want 1", len(pending))
	}
	claimID(t, s, pending[0].ID, "127.0.0.1:8002", at(30))
	_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "x", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(31)})
	wantErr(t, "second TaskClaim", err, store.ErrNotFound)
}

// testClaimConcurrent claims from many goroutines at once: every task is
// handed out exactly once and nothing is claimed twice.
func testClaimConcurrent(t *testing.T, s store.Store) {
	const tasks, workers = 200, 16
	want := make(map[string]bool, tasks)
	for i := range tasks {
		owner := []string{"alice", "bob", "carol", ""}[i%4]
		want[insert(t, s, store.TaskInsertParams{Owner: owner, Priority: i % 3, Now: at(i)}).ID] = true
	}

	var (
		mu sync.Mutex // guards claimed and errs
		// claimed counts claims per task id.
		claimed = make(map[string]int, tasks)
		errs    []error
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			p := &store.TaskClaimParams{InstanceID: "worker", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(1000 + w)}
			for {
				tk, err := s.TaskClaim(t.Context(), p)
				mu.Lock()
				if err == nil {
					claimed[tk.ID]++
				} else if !errors.Is(err, store.ErrNotFound) {
					errs = append(errs, err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()

	if len(errs) > 0 {
		t.Fatalf("TaskClaim errors: %v", errs)
	}
	for id, n := range claimed {
		if n != 1 || !want[id] {
			t.Errorf("task %s claimed %d times (known task: %v)", id, n, want[id])
		}
	}
	if len(claimed) != tasks {
		t.Errorf("%d distinct tasks claimed, want %d", len(claimed), tasks)
	}
	counts, err := s.TaskCounts(t.Context())
	must(t, "TaskCounts", err)
	if counts[task.StatusRunning] != tasks || counts[task.StatusPending] != 0 {
		t.Errorf("counts = %v, want %d running, 0 pending", counts, tasks)
	}
}

func testRequeue(t *testing.T, s store.Store) {
	in := insert(t, s, store.TaskInsertParams{Now: at(0)})
	claimed := claim(t, s, "127.0.0.1:8001", at(1))
	must(t, "TaskProgress", s.TaskProgress(t.Context(), &store.TaskProgressParams{ID: in.ID, Progress: 40, Now: at(2)}))

	got, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: in.ID, LeaseOwner: replicaA, Now: at(3)})
	must(t, "TaskRequeue", err)
	if got.Status != task.StatusPending || got.InstanceID != "" || got.LeaseOwner != "" || !got.LeaseExpiresAt.IsZero() {
		t.Errorf("requeued: status %s, instance %q, lease %q until %v; want pending, no instance, no lease",
			got.Status, got.InstanceID, got.LeaseOwner, got.LeaseExpiresAt)
	}
	if got.Attempts != 1 || got.Progress != 40 || !got.UpdatedAt.Equal(at(3)) || !got.FinishedAt.IsZero() {
		t.Errorf("requeued: attempts %d, progress %d, updated %v, finished %v; want 1, 40, %v, zero",
			got.Attempts, got.Progress, got.UpdatedAt, got.FinishedAt, at(3))
	}
	if got.Seq != claimed.Seq {
		t.Errorf("requeued Seq = %d, want %d (kept)", got.Seq, claimed.Seq)
	}
	diff(t, "TaskGet after requeue", got, get(t, s, in.ID))
	if n := position(t, s, in.ID); n != 1 {
		t.Errorf("queue position after requeue = %d, want 1", n)
	}

	again := claim(t, s, "127.0.0.1:8002", at(4))
	if again.ID != in.ID || again.Attempts != 2 || again.InstanceID != "127.0.0.1:8002" || !again.StartedAt.Equal(at(4)) {
		t.Errorf("second claim: %s attempts %d on %q started %v; want %s, 2, 127.0.0.1:8002, %v",
			again.ID, again.Attempts, again.InstanceID, again.StartedAt, in.ID, at(4))
	}
}

func testRequeueKeepsPlace(t *testing.T, s store.Store) {
	first := insert(t, s, store.TaskInsertParams{Now: at(0)})
	claimID(t, s, first.ID, "127.0.0.1:8001", at(1))
	later := insert(t, s, store.TaskInsertParams{Now: at(2)})
	_, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: first.ID, Now: at(3)})
	must(t, "TaskRequeue without owner", err)
	claimID(t, s, first.ID, "127.0.0.1:8002", at(4))
	claimID(t, s, later.ID, "127.0.0.1:8003", at(5))
}

// testRequeueRefund: a run that never reached its instance gives its
// attempt back; otherwise attempts are kept.
func testRequeueRefund(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Now: at(0)})
	steps := []struct {
		refund       bool
		wantAttempts int
	}{{false, 1}, {true, 1}, {false, 2}, {true, 2}}
	for i, st := range steps {
		claimID(t, s, tk.ID, "127.0.0.1:8001", at(2*i+1))
		got, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{
			ID: tk.ID, LeaseOwner: replicaA, RefundAttempt: st.refund, Now: at(2*i + 2),
		})
		must(t, "TaskRequeue", err)
		if got.Attempts != st.wantAttempts || got.Status != task.StatusPending {
			t.Fatalf("step %d (refund %v): %s with %d attempts, want pending with %d",
				i, st.refund, got.Status, got.Attempts, st.wantAttempts)
		}
	}
}

func testRequeueConflicts(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	running := byStatus[task.StatusRunning]
	cases := []struct {
		name   string
		p      store.TaskRequeueParams
		target error
	}{
		{"other owner", store.TaskRequeueParams{ID: running.ID, LeaseOwner: replicaB}, store.ErrConflict},
		{"pending", store.TaskRequeueParams{ID: byStatus[task.StatusPending].ID}, store.ErrConflict},
		{"completed", store.TaskRequeueParams{ID: byStatus[task.StatusCompleted].ID}, store.ErrConflict},
		{"failed", store.TaskRequeueParams{ID: byStatus[task.StatusFailed].ID}, store.ErrConflict},
		{"cancelled", store.TaskRequeueParams{ID: byStatus[task.StatusCancelled].ID}, store.ErrConflict},
		{"missing", store.TaskRequeueParams{ID: newID()}, store.ErrNotFound},
	}
	for _, c := range cases {
		c.p.Now = at(50)
		before, _ := s.TaskGet(t.Context(), c.p.ID)
		_, err := s.TaskRequeue(t.Context(), &c.p)
		wantErr(t, "TaskRequeue "+c.name, err, c.target)
		if before != nil {
			diff(t, "task after refused requeue "+c.name, before, get(t, s, c.p.ID))
		}
	}
}

// claimWith claims with params p and returns the task's id.
func claimWith(t *testing.T, s store.Store, p store.TaskClaimParams) string {
	t.Helper()
	if p.InstanceID == "" {
		p.InstanceID = "127.0.0.1:8001"
	}
	p.LeaseOwner, p.LeaseTTL = replicaA, leaseTTL
	tk, err := s.TaskClaim(t.Context(), &p)
	must(t, "TaskClaim", err)
	return tk.ID
}

// testClaimAging: with aging, one priority point is worth one aging step of
// waiting, so a low-priority task is passed only by higher-priority tasks
// submitted less than (difference × aging) after it.
func testClaimAging(t *testing.T, s store.Store) {
	const aging = 10 * time.Second
	low := insert(t, s, store.TaskInsertParams{Priority: 0, Aging: aging, Now: at(0)}).ID
	soonHigh := insert(t, s, store.TaskInsertParams{Priority: 1, Aging: aging, Now: at(5)}).ID
	lateHigh := insert(t, s, store.TaskInsertParams{Priority: 1, Aging: aging, Now: at(15)}).ID
	muchHigher := insert(t, s, store.TaskInsertParams{Priority: 5, Aging: aging, Now: at(30)}).ID
	want := []string{muchHigher, soonHigh, low, lateHigh}
	for i, id := range want {
		if got := position(t, s, id); got != i+1 {
			t.Errorf("position of task %d = %d, want %d", i, got, i+1)
		}
	}
	var got []string
	for range want {
		got = append(got, claim(t, s, "127.0.0.1:8001", at(40)).ID)
	}
	diff(t, "claim order with aging", want, got)
}

// testClaimFairShare: one owner's long queue does not hold back another
// owner's task, even when tasks run one at a time: owners with equal running
// counts are served round robin.
func testClaimFairShare(t *testing.T, s store.Store) {
	var alice []string
	for i := range 10 {
		alice = append(alice, insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(i)}).ID)
	}
	bob := insert(t, s, store.TaskInsertParams{Owner: "bob", Now: at(20)}).ID
	// Priority orders an owner's own tasks, not the owners: carol's
	// low-priority task waits only for her turn.
	carol := insert(t, s, store.TaskInsertParams{Owner: "carol", Priority: -5, Now: at(21)}).ID
	want := []string{alice[0], bob, carol, alice[1], alice[2]}
	var got []string
	for i := range want {
		tk := claim(t, s, "127.0.0.1:8001", at(30+2*i))
		got = append(got, tk.ID)
		finish(t, s, tk.ID, task.StatusRunning, task.StatusCompleted, at(31+2*i))
	}
	diff(t, "claim order between owners, one at a time", want, got)
}

// testClaimFairShareCounts: fewer running tasks goes first, and running
// counts follow claim, finish, requeue and new owners.
func testClaimFairShareCounts(t *testing.T, s store.Store) {
	a1 := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)}).ID
	b1 := insert(t, s, store.TaskInsertParams{Owner: "bob", Now: at(1)}).ID
	b2 := insert(t, s, store.TaskInsertParams{Owner: "bob", Now: at(2)}).ID
	a2 := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(3)}).ID
	a3 := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(4)}).ID
	claimID(t, s, a1, "i1", at(10)) // none running, never served: by name
	claimID(t, s, b1, "i2", at(11)) // bob has none running
	claimID(t, s, a2, "i3", at(12)) // one running each: alice served longer ago
	finish(t, s, a1, task.StatusRunning, task.StatusCompleted, at(13))
	finish(t, s, a2, task.StatusRunning, task.StatusFailed, at(13))
	claimID(t, s, a3, "i1", at(14)) // alice none running, bob one
	_, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: a3, Now: at(15)})
	must(t, "TaskRequeue", err)
	c1 := insert(t, s, store.TaskInsertParams{Owner: "carol", Now: at(16)}).ID
	claimID(t, s, c1, "i3", at(17)) // alice and carol none running: carol never served
	claimID(t, s, a3, "i1", at(18)) // alice none running, bob one
	claimID(t, s, b2, "i4", at(19))
}

// testClaimWarm: a task that needs the instance's loaded model may go
// before the head, but only within the warm window.
func testClaimWarm(t *testing.T, s store.Store) {
	headX := insert(t, s, store.TaskInsertParams{Checkpoints: []string{"x.ckpt"}, Now: at(0)}).ID
	nearY := insert(t, s, store.TaskInsertParams{Checkpoints: []string{"y.ckpt"}, Now: at(5)}).ID
	farY := insert(t, s, store.TaskInsertParams{Checkpoints: []string{"y.ckpt"}, Now: at(100)}).ID
	plain := insert(t, s, store.TaskInsertParams{Now: at(200)}).ID
	warmY := store.TaskClaimParams{Checkpoint: "y.ckpt", WarmWindow: 10 * time.Second, Now: at(300)}

	if got := claimWith(t, s, warmY); got != nearY {
		t.Errorf("warm claim took %s, want the y task within the window %s", got, nearY)
	}
	if got := claimWith(t, s, warmY); got != headX {
		t.Errorf("warm claim took %s, want the head %s (the next y task is beyond the window)", got, headX)
	}
	// Window zero turns placement off: the head (farY) again.
	off := store.TaskClaimParams{Checkpoint: "x.ckpt", Now: at(300)}
	if got := claimWith(t, s, off); got != farY {
		t.Errorf("claim without window took %s, want the head %s", got, farY)
	}
	if got := claimWith(t, s, warmY); got != plain {
		t.Errorf("warm claim took %s, want the head %s (no y task left)", got, plain)
	}
}

// testClaimWarmKey: a task with several checkpoints matches their
// CheckpointKey, and the head is kept when it needs the loaded model.
func testClaimWarmKey(t *testing.T, s store.Store) {
	head := insert(t, s, store.TaskInsertParams{Checkpoints: []string{"z.ckpt"}, Now: at(0)}).ID
	pair := insert(t, s, store.TaskInsertParams{Checkpoints: []string{"b.ckpt", "a.ckpt"}, Now: at(1)}).ID
	samePair := insert(t, s, store.TaskInsertParams{Checkpoints: []string{"a.ckpt", "b.ckpt"}, Now: at(2)}).ID
	key := task.CheckpointKey([]string{"a.ckpt", "b.ckpt"})
	p := store.TaskClaimParams{Checkpoint: key, WarmWindow: time.Minute, Now: at(10)}
	if got := claimWith(t, s, p); got != pair {
		t.Errorf("claim for %q took %s, want %s", key, got, pair)
	}
	p.Checkpoint = "z.ckpt"
	if got := claimWith(t, s, p); got != head {
		t.Errorf("claim for the head's model took %s, want the head %s", got, head)
	}
	if got := claimWith(t, s, p); got != samePair {
		t.Errorf("claim took %s, want the last task %s", got, samePair)
	}
}

// testClaimWarmKeepsFairShare: warm placement picks among the fair-share
// head owner's tasks only, so a loaded model never lets one owner's backlog
// pass another owner's turn.
func testClaimWarmKeepsFairShare(t *testing.T, s store.Store) {
	var alice []string
	for i := range 3 {
		alice = append(alice, insert(t, s, store.TaskInsertParams{Owner: "alice", Checkpoints: []string{"k.ckpt"}, Now: at(i)}).ID)
	}
	bob := insert(t, s, store.TaskInsertParams{Owner: "bob", Checkpoints: []string{"l.ckpt"}, Now: at(3)}).ID
	warmK := store.TaskClaimParams{Checkpoint: "k.ckpt", WarmWindow: time.Hour, Now: at(10)}
	if got := claimWith(t, s, warmK); got != alice[0] {
		t.Fatalf("first claim took %s, want alice's first %s", got, alice[0])
	}
	if got := claimWith(t, s, warmK); got != bob {
		t.Errorf("second claim took %s, want bob's task %s (bob has none running; k.ckpt tasks are alice's)", got, bob)
	}
	if got := claimWith(t, s, warmK); got != alice[1] {
		t.Errorf("third claim took %s, want alice's next %s", got, alice[1])
	}
}

// testRequeueRaisesProgress: TaskRequeue raises the stored progress to the
// run's, capped at 99, and never lowers it: a retry shows what clients saw.
func testRequeueRaisesProgress(t *testing.T, s store.Store) {
	in := insert(t, s, store.TaskInsertParams{Now: at(0)})
	for i, c := range []struct{ run, want int }{{55, 55}, {30, 55}, {120, 99}} {
		claimID(t, s, in.ID, "127.0.0.1:8001", at(1+2*i))
		got, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: in.ID, LeaseOwner: replicaA, Progress: c.run, Now: at(2 + 2*i)})
		must(t, "TaskRequeue", err)
		if got.Progress != c.want || get(t, s, in.ID).Progress != c.want {
			t.Errorf("requeue with progress %d: progress %d (stored %d), want %d", c.run, got.Progress, get(t, s, in.ID).Progress, c.want)
		}
	}
}
