package storetest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func runCases() []testCase {
	return []testCase{
		{"Progress", testProgress},
		{"ProgressNotRunning", testProgressNotRunning},
		{"RenewLease", testRenewLease},
		{"RenewLeaseConflicts", testRenewLeaseConflicts},
		{"TakeoverLease", testTakeoverLease},
		{"FinishCompleted", testFinishCompleted},
		{"FinishFailed", testFinishFailed},
		{"FinishRaisesProgress", testFinishRaisesProgress},
		{"FinishPending", testFinishPending},
		{"FinishConflicts", testFinishConflicts},
		{"FinishNotFinal", testFinishNotFinal},
		{"FinishWithFiles", testFinishWithFiles},
		{"CancelPending", testCancelPending},
		{"CancelRunning", testCancelRunning},
		{"CancelConflicts", testCancelConflicts},
		{"ListRunning", testListRunning},
	}
}

// progress sets a task's progress and returns the stored value.
func progress(t *testing.T, s store.Store, id string, p, sec int) int {
	t.Helper()
	must(t, "TaskProgress", s.TaskProgress(t.Context(), &store.TaskProgressParams{ID: id, Progress: p, Now: at(sec)}))
	return get(t, s, id).Progress
}

func testProgress(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Now: at(0)})
	claim(t, s, "127.0.0.1:8001", at(1))
	steps := []struct{ set, want int }{
		{30, 30}, {20, 30}, {30, 30}, {-5, 30}, {99, 99}, {100, 99}, {250, 99},
	}
	for i, st := range steps {
		if got := progress(t, s, tk.ID, st.set, 2+i); got != st.want {
			t.Fatalf("step %d: progress after setting %d = %d, want %d", i, st.set, got, st.want)
		}
	}
	if got := get(t, s, tk.ID); !got.UpdatedAt.After(at(1)) {
		t.Errorf("UpdatedAt = %v, want after the claim at %v", got.UpdatedAt, at(1))
	}
	done := finish(t, s, tk.ID, task.StatusRunning, task.StatusCompleted, at(20))
	if done.Progress != 100 {
		t.Errorf("completed progress = %d, want 100", done.Progress)
	}
}

func testProgressNotRunning(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	for st, tk := range byStatus {
		if st == task.StatusRunning {
			continue
		}
		err := s.TaskProgress(t.Context(), &store.TaskProgressParams{ID: tk.ID, Progress: 50, Now: at(40)})
		wantErr(t, "TaskProgress on "+string(st), err, store.ErrConflict)
		diff(t, "task after refused progress", tk, get(t, s, tk.ID))
	}
	err := s.TaskProgress(t.Context(), &store.TaskProgressParams{ID: newID(), Progress: 50, Now: at(40)})
	wantErr(t, "TaskProgress on missing", err, store.ErrNotFound)
}

func testRenewLease(t *testing.T, s store.Store) {
	insert(t, s, store.TaskInsertParams{Now: at(0)})
	tk := claim(t, s, "127.0.0.1:8001", at(1))
	err := s.TaskRenewLease(t.Context(), &store.TaskLeaseParams{ID: tk.ID, LeaseOwner: replicaA, LeaseTTL: 2 * leaseTTL, Now: at(10)})
	must(t, "TaskRenewLease", err)
	got := get(t, s, tk.ID)
	if want := at(10).Add(2 * leaseTTL); !got.LeaseExpiresAt.Equal(want) || got.LeaseOwner != replicaA {
		t.Errorf("lease = %q until %v, want %q until %v", got.LeaseOwner, got.LeaseExpiresAt, replicaA, want)
	}
	if got.Status != task.StatusRunning || got.Attempts != 1 || got.InstanceID != tk.InstanceID || !got.UpdatedAt.Equal(at(1)) {
		t.Errorf("renew changed the run: %s, attempts %d, instance %q, updated %v; want running, 1, %q, %v",
			got.Status, got.Attempts, got.InstanceID, got.UpdatedAt, tk.InstanceID, at(1))
	}
}

// testTakeoverLease: a replica that adopts an instance takes over the lease
// of a task running there; the former owner can then neither renew, finish
// nor requeue it.
func testTakeoverLease(t *testing.T, s store.Store) {
	insert(t, s, store.TaskInsertParams{Now: at(0)})
	tk := claim(t, s, "127.0.0.1:8001", at(1))
	err := s.TaskRenewLease(t.Context(), &store.TaskLeaseParams{ID: tk.ID, LeaseOwner: replicaB, LeaseTTL: leaseTTL, Takeover: true, Now: at(20)})
	must(t, "TaskRenewLease takeover", err)
	got := get(t, s, tk.ID)
	if want := at(20).Add(leaseTTL); got.LeaseOwner != replicaB || !got.LeaseExpiresAt.Equal(want) {
		t.Errorf("lease after takeover = %q until %v, want %q until %v", got.LeaseOwner, got.LeaseExpiresAt, replicaB, want)
	}
	if got.Status != task.StatusRunning || got.Attempts != 1 || got.InstanceID != tk.InstanceID {
		t.Errorf("takeover changed the run: %s, attempts %d, instance %q", got.Status, got.Attempts, got.InstanceID)
	}
	err = s.TaskRenewLease(t.Context(), &store.TaskLeaseParams{ID: tk.ID, LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(21)})
	wantErr(t, "renew by the former owner", err, store.ErrConflict)
	_, err = s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: tk.ID, From: []task.Status{task.StatusRunning}, To: task.StatusCompleted, LeaseOwner: replicaA, Now: at(22),
	})
	wantErr(t, "finish by the former owner", err, store.ErrConflict)
	_, err = s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: tk.ID, LeaseOwner: replicaA, Now: at(22)})
	wantErr(t, "requeue by the former owner", err, store.ErrConflict)
	_, err = s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: tk.ID, From: []task.Status{task.StatusRunning}, To: task.StatusCompleted, LeaseOwner: replicaB, Now: at(23),
	})
	must(t, "finish by the new owner", err)
	byStatus := withStatus(t, s, "bob")
	for _, st := range []task.Status{task.StatusPending, task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
		err := s.TaskRenewLease(t.Context(), &store.TaskLeaseParams{ID: byStatus[st].ID, LeaseOwner: replicaB, LeaseTTL: leaseTTL, Takeover: true, Now: at(60)})
		wantErr(t, "takeover of a "+string(st)+" task", err, store.ErrConflict)
	}
	err = s.TaskRenewLease(t.Context(), &store.TaskLeaseParams{ID: newID(), LeaseOwner: replicaB, LeaseTTL: leaseTTL, Takeover: true, Now: at(60)})
	wantErr(t, "takeover of a missing task", err, store.ErrNotFound)
}

func testRenewLeaseConflicts(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	running := byStatus[task.StatusRunning]
	renew := func(id, owner string) error {
		return s.TaskRenewLease(t.Context(), &store.TaskLeaseParams{ID: id, LeaseOwner: owner, LeaseTTL: leaseTTL, Now: at(60)})
	}
	wantErr(t, "renew by another owner", renew(running.ID, replicaB), store.ErrConflict)
	diff(t, "task after refused renew", running, get(t, s, running.ID))
	for _, st := range []task.Status{task.StatusPending, task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
		wantErr(t, "renew "+string(st), renew(byStatus[st].ID, replicaA), store.ErrConflict)
	}
	wantErr(t, "renew missing", renew(newID(), replicaA), store.ErrNotFound)
}

func testFinishCompleted(t *testing.T, s store.Store) {
	in := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claimed := claim(t, s, "127.0.0.1:8001", at(1))
	result := &task.Result{
		Files: []string{"http://gw/files/f1/a.png", "http://gw/files/f2/b.mp4"},
		Outputs: map[string][]task.Output{
			"9":  {{URL: "http://gw/files/f1/a.png", Filename: "a.png", Type: "output", Kind: "images", NodeID: "9", FileID: "f1"}},
			"12": {{URL: "http://gw/files/f2/b.mp4", Filename: "b.mp4", Type: "temp", Kind: "gifs", NodeID: "12", FileID: "f2"}},
		},
	}
	got, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: in.ID, From: []task.Status{task.StatusRunning}, To: task.StatusCompleted,
		LeaseOwner: replicaA, Result: result, Now: at(9),
	})
	must(t, "TaskFinish", err)
	want := *claimed
	want.Status, want.Progress, want.Result = task.StatusCompleted, 100, result
	want.FinishedAt, want.UpdatedAt = at(9), at(9)
	want.LeaseOwner, want.LeaseExpiresAt = "", time.Time{}
	diff(t, "finished task", &want, got)
	diff(t, "TaskGet after finish", got, get(t, s, in.ID))
}

func testFinishFailed(t *testing.T, s store.Store) {
	in := insert(t, s, store.TaskInsertParams{Now: at(0)})
	claim(t, s, "127.0.0.1:8001", at(1))
	progress(t, s, in.ID, 35, 2)
	taskErr := &task.Error{
		Type: "prompt_outputs_failed_validation", Message: "Prompt outputs failed validation",
		NodeID: "4", NodeType: "CheckpointLoaderSimple",
		NodeErrors:    json.RawMessage(`{"4":{"errors":[{"type":"value_not_in_list","message":"ckpt_name"}]}}`),
		ExceptionType: "RuntimeError",
		Traceback:     "  File \"/srv/ComfyUI/nodes.py\", line 1857, in batch\n    s = torch.cat((image1, image2), dim=0)\n",
	}
	got, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: in.ID, From: []task.Status{task.StatusPending, task.StatusRunning}, To: task.StatusFailed,
		Error: taskErr, Now: at(3),
	})
	must(t, "TaskFinish", err)
	if got.Status != task.StatusFailed || got.Progress != 35 || got.Result != nil || !got.FinishedAt.Equal(at(3)) {
		t.Errorf("failed task: %s, progress %d, result %v, finished %v; want failed, 35, nil, %v",
			got.Status, got.Progress, got.Result, got.FinishedAt, at(3))
	}
	diff(t, "task error", taskErr, get(t, s, in.ID).Error)
}

// testFinishRaisesProgress: TaskFinish raises the stored progress to the
// run's (TaskProgress writes are throttled), never lowers it, caps it at 99
// and sets 100 on completion.
func testFinishRaisesProgress(t *testing.T, s store.Store) {
	cases := []struct {
		name         string
		to           task.Status
		stored, run  int
		wantProgress int
	}{
		{"failed raised", task.StatusFailed, 20, 60, 60},
		{"failed kept", task.StatusFailed, 60, 20, 60},
		{"failed capped", task.StatusFailed, 0, 150, 99},
		{"cancelled raised", task.StatusCancelled, 0, 45, 45},
		{"completed", task.StatusCompleted, 30, 50, 100},
	}
	for i, c := range cases {
		in := insert(t, s, store.TaskInsertParams{Now: at(0)})
		claimID(t, s, in.ID, "127.0.0.1:8001", at(1))
		if c.stored > 0 {
			progress(t, s, in.ID, c.stored, 2)
		}
		got, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
			ID: in.ID, From: []task.Status{task.StatusRunning}, To: c.to, Progress: c.run, Now: at(3 + i),
		})
		must(t, "TaskFinish "+c.name, err)
		if got.Progress != c.wantProgress || get(t, s, in.ID).Progress != c.wantProgress {
			t.Errorf("%s: progress %d (stored %d), want %d", c.name, got.Progress, get(t, s, in.ID).Progress, c.wantProgress)
		}
	}
}

func testFinishPending(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Now: at(0)})
	got := finish(t, s, tk.ID, task.StatusPending, task.StatusFailed, at(1))
	if got.Status != task.StatusFailed || !got.FinishedAt.Equal(at(1)) || got.Attempts != 0 {
		t.Errorf("got %s finished %v attempts %d; want failed, %v, 0", got.Status, got.FinishedAt, got.Attempts, at(1))
	}
	_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "x", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(2)})
	wantErr(t, "claim after finishing the only task", err, store.ErrNotFound)
}

func testFinishConflicts(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	running, pending := byStatus[task.StatusRunning].ID, byStatus[task.StatusPending].ID
	anyStatus := slices.Clone(task.AllStatuses)
	cases := []struct {
		name   string
		p      store.TaskFinishParams
		target error
	}{
		{"from does not match", store.TaskFinishParams{ID: running, From: []task.Status{task.StatusPending}, To: task.StatusFailed}, store.ErrConflict},
		{"empty from", store.TaskFinishParams{ID: running, To: task.StatusFailed}, store.ErrConflict},
		{"other lease owner", store.TaskFinishParams{ID: running, From: []task.Status{task.StatusRunning}, To: task.StatusCompleted, LeaseOwner: replicaB}, store.ErrConflict},
		{"pending with lease owner", store.TaskFinishParams{ID: pending, From: []task.Status{task.StatusPending}, To: task.StatusFailed, LeaseOwner: replicaA}, store.ErrConflict},
		{"pending to completed", store.TaskFinishParams{ID: pending, From: []task.Status{task.StatusPending}, To: task.StatusCompleted}, store.ErrConflict},
		{"completed again", store.TaskFinishParams{ID: byStatus[task.StatusCompleted].ID, From: anyStatus, To: task.StatusFailed}, store.ErrConflict},
		{"failed again", store.TaskFinishParams{ID: byStatus[task.StatusFailed].ID, From: anyStatus, To: task.StatusFailed}, store.ErrConflict},
		{"cancelled again", store.TaskFinishParams{ID: byStatus[task.StatusCancelled].ID, From: anyStatus, To: task.StatusCompleted}, store.ErrConflict},
		{"missing", store.TaskFinishParams{ID: newID(), From: anyStatus, To: task.StatusFailed}, store.ErrNotFound},
	}
	for _, c := range cases {
		c.p.Now = at(70)
		before, _ := s.TaskGet(t.Context(), c.p.ID)
		_, err := s.TaskFinish(t.Context(), &c.p)
		wantErr(t, "TaskFinish "+c.name, err, c.target)
		if before != nil {
			diff(t, "task after refused finish "+c.name, before, get(t, s, c.p.ID))
		}
	}
}

func testFinishNotFinal(t *testing.T, s store.Store) {
	insert(t, s, store.TaskInsertParams{Now: at(0)})
	tk := claim(t, s, "127.0.0.1:8001", at(1))
	for _, to := range []task.Status{task.StatusPending, task.StatusRunning, "bogus"} {
		_, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
			ID: tk.ID, From: []task.Status{task.StatusRunning}, To: to, Now: at(2),
		})
		if err == nil {
			t.Errorf("TaskFinish to %q succeeded, want an error", to)
		}
	}
	diff(t, "task after refused finishes", tk, get(t, s, tk.ID))
}

func testCancelPending(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Now: at(0)})
	got, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: tk.ID, Now: at(4)})
	must(t, "TaskRequestCancel", err)
	want := *tk
	want.Status, want.UpdatedAt, want.FinishedAt = task.StatusCancelled, at(4), at(4)
	diff(t, "cancelled task", &want, got, ignoreSeq)
	diff(t, "TaskGet after cancel", got, get(t, s, tk.ID))
	_, err = s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "x", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(5)})
	wantErr(t, "claim after cancel", err, store.ErrNotFound)
}

func testCancelRunning(t *testing.T, s store.Store) {
	insert(t, s, store.TaskInsertParams{Now: at(0)})
	tk := claim(t, s, "127.0.0.1:8001", at(1))
	for i := range 2 { // asking twice is fine
		got, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: tk.ID, Now: at(2 + i)})
		must(t, "TaskRequestCancel", err)
		if got.Status != task.StatusRunning || !got.CancelRequested || got.LeaseOwner != replicaA || !got.FinishedAt.IsZero() {
			t.Fatalf("after cancel request: %s, requested %v, lease %q, finished %v; want running, true, %q, zero",
				got.Status, got.CancelRequested, got.LeaseOwner, got.FinishedAt, replicaA)
		}
	}
	if !get(t, s, tk.ID).CancelRequested {
		t.Fatal("TaskGet: CancelRequested = false, want true")
	}
	got, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: tk.ID, From: []task.Status{task.StatusRunning}, To: task.StatusCancelled, LeaseOwner: replicaA, Now: at(5),
	})
	must(t, "TaskFinish cancelled", err)
	if got.Status != task.StatusCancelled || !got.FinishedAt.Equal(at(5)) {
		t.Errorf("finished: %s at %v, want cancelled at %v", got.Status, got.FinishedAt, at(5))
	}
}

func testCancelConflicts(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	for _, st := range []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
		_, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: byStatus[st].ID, Now: at(80)})
		wantErr(t, "cancel "+string(st), err, store.ErrConflict)
		diff(t, "task after refused cancel", byStatus[st], get(t, s, byStatus[st].ID))
	}
	_, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: newID(), Now: at(80)})
	wantErr(t, "cancel missing", err, store.ErrNotFound)
}

func testListRunning(t *testing.T, s store.Store) {
	const inst1, inst2 = "10.0.0.1:8001", "10.0.0.1:8002"
	// Claimed at seconds 1, 2, 3 and 4 with a 30s TTL: leases end at 31, 32, 33 and 34.
	a := claimNew(t, s, inst1, 1)
	b := claimNew(t, s, inst2, 2)
	c := claimNew(t, s, inst1, 3)
	d := claimNew(t, s, inst2, 4)
	insert(t, s, store.TaskInsertParams{Now: at(5)})                                        // pending
	finish(t, s, claimNew(t, s, inst1, 6).ID, task.StatusRunning, task.StatusFailed, at(7)) // finished
	half := func(sec int) time.Time { return at(sec).Add(500 * time.Millisecond) }
	cases := []struct {
		name string
		p    store.TaskListRunningParams
		want []*task.Task
	}{
		{"all", store.TaskListRunningParams{}, []*task.Task{a, b, c, d}},
		{"instance 1", store.TaskListRunningParams{InstanceID: inst1}, []*task.Task{a, c}},
		{"instance 2", store.TaskListRunningParams{InstanceID: inst2}, []*task.Task{b, d}},
		{"unknown instance", store.TaskListRunningParams{InstanceID: "nowhere:1"}, nil},
		{"none expired", store.TaskListRunningParams{LeaseExpiredBefore: half(30)}, nil},
		{"one expired", store.TaskListRunningParams{LeaseExpiredBefore: half(31)}, []*task.Task{a}},
		{"three expired", store.TaskListRunningParams{LeaseExpiredBefore: half(33)}, []*task.Task{a, b, c}},
		{"expired on instance 2", store.TaskListRunningParams{InstanceID: inst2, LeaseExpiredBefore: half(33)}, []*task.Task{b}},
		{"all expired on instance 1", store.TaskListRunningParams{InstanceID: inst1, LeaseExpiredBefore: at(100)}, []*task.Task{a, c}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.TaskListRunning(t.Context(), &tc.p)
			must(t, "TaskListRunning", err)
			sortByID(got)
			want := slices.Clone(tc.want)
			sortByID(want)
			diff(t, "TaskListRunning", want, got)
		})
	}
}

// claimNew inserts a task and claims it on instanceID at second sec.
func claimNew(t *testing.T, s store.Store, instanceID string, sec int) *task.Task {
	t.Helper()
	tk := insert(t, s, store.TaskInsertParams{Priority: 100, Now: at(sec)})
	return claimID(t, s, tk.ID, instanceID, at(sec))
}

func sortByID(tasks []*task.Task) {
	slices.SortFunc(tasks, func(a, b *task.Task) int { return strings.Compare(a.ID, b.ID) })
}

// testFinishWithFiles: the records of a task's outputs come with its
// finish; one already stored (a second collection) is kept as it was.
func testFinishWithFiles(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claim(t, s, "127.0.0.1:8001", at(1))
	kept := newFile(t, s, "alice", tk.ID, 2)
	fresh := &file.File{
		ID: newID(), Owner: "alice", TaskID: tk.ID, NodeID: "9", Filename: "b.png",
		ContentType: "image/png", Size: 77, CreatedAt: at(3),
	}
	again := *kept
	again.Size = 1
	_, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: tk.ID, From: []task.Status{task.StatusRunning}, To: task.StatusCompleted, LeaseOwner: replicaA,
		Files: []*file.File{&again, fresh}, Now: at(4),
	})
	must(t, "TaskFinish", err)
	got, err := s.FileGet(t.Context(), fresh.ID)
	must(t, "FileGet", err)
	diff(t, "file finished with the task", fresh, got)
	got, err = s.FileGet(t.Context(), kept.ID)
	must(t, "FileGet", err)
	diff(t, "file stored before the finish", kept, got)
	list, err := s.FileList(t.Context(), &store.FileListParams{Owner: "alice", TaskID: tk.ID})
	must(t, "FileList", err)
	if list.Total != 2 {
		t.Errorf("task files = %d (%v), want 2", list.Total, fileIDs(list.Items))
	}
}
