package storetest

import (
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func taskCases() []testCase {
	return []testCase{
		{"InsertGet", testTaskInsertGet},
		{"InsertMinimal", testTaskInsertMinimal},
		{"InsertDuplicate", testTaskInsertDuplicate},
		{"GetMissing", testTaskGetMissing},
		{"TimePrecision", testTaskTimePrecision},
		{"SeqGrows", testTaskSeqGrows},
		{"Counts", testTaskCounts},
		{"CountsEmpty", testTaskCountsEmpty},
		{"Requires", testTaskRequires},
	}
}

func testTaskInsertGet(t *testing.T, s store.Store) {
	p := store.TaskInsertParams{
		ID:          newID(),
		Owner:       "alice",
		Priority:    7,
		Workflow:    []byte(`{"3": {"class_type": "KSampler", "inputs": {"seed": 42}}}`),
		Params:      []byte(`{"3.seed": 7}`),
		Checkpoints: []string{"sdxl.safetensors", "vae.safetensors"},
		Requires:    map[string]string{"gpu": "a100", "pool": "video"},
		Timeout:     90 * time.Second,
		Now:         at(1),
	}
	got, err := s.TaskInsert(t.Context(), &p)
	must(t, "TaskInsert", err)
	want := &task.Task{
		ID: p.ID, Owner: "alice", Status: task.StatusPending, Priority: 7,
		Workflow: p.Workflow, Params: p.Params, Checkpoints: p.Checkpoints, Requires: p.Requires, Timeout: p.Timeout,
		CreatedAt: at(1), UpdatedAt: at(1),
	}
	diff(t, "inserted task", want, got, ignoreSeq)
	checkUTC(t, "inserted task", got.CreatedAt, got.UpdatedAt)

	read := get(t, s, p.ID)
	diff(t, "TaskGet", got, read)
	checkUTC(t, "TaskGet", read.CreatedAt, read.UpdatedAt)
	for name, tm := range map[string]time.Time{
		"StartedAt": read.StartedAt, "FinishedAt": read.FinishedAt, "LeaseExpiresAt": read.LeaseExpiresAt,
	} {
		if !tm.IsZero() {
			t.Errorf("%s = %v, want zero", name, tm)
		}
	}
}

func testTaskInsertMinimal(t *testing.T, s store.Store) {
	id := newID()
	got, err := s.TaskInsert(t.Context(), &store.TaskInsertParams{ID: id, Workflow: []byte(`{}`), Now: at(0)})
	must(t, "TaskInsert", err)
	want := &task.Task{ID: id, Status: task.StatusPending, Workflow: []byte(`{}`), CreatedAt: at(0), UpdatedAt: at(0)}
	diff(t, "inserted task", want, got, ignoreSeq)
	diff(t, "TaskGet", want, get(t, s, id), ignoreSeq)
}

func testTaskInsertDuplicate(t *testing.T, s store.Store) {
	first := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(1)})
	_, err := s.TaskInsert(t.Context(), &store.TaskInsertParams{
		ID: first.ID, Owner: "mallory", Workflow: []byte(`{}`), Now: at(2),
	})
	wantErr(t, "duplicate TaskInsert", err, store.ErrConflict)
	diff(t, "task after duplicate insert", first, get(t, s, first.ID))

	counts, err := s.TaskCounts(t.Context())
	must(t, "TaskCounts", err)
	if counts[task.StatusPending] != 1 {
		t.Errorf("pending count = %d, want 1", counts[task.StatusPending])
	}
}

func testTaskGetMissing(t *testing.T, s store.Store) {
	_, err := s.TaskGet(t.Context(), newID())
	wantErr(t, "TaskGet missing", err, store.ErrNotFound)
}

// testTaskTimePrecision pins the decision: times are stored at millisecond
// precision (sub-millisecond parts truncated) and come back in UTC, whatever
// the location they went in with.
func testTaskTimePrecision(t *testing.T, s store.Store) {
	paris := time.FixedZone("CET", 3600)
	now := t0.Add(123*time.Millisecond + 456789*time.Nanosecond).In(paris)
	tk := insert(t, s, store.TaskInsertParams{Now: now})
	want := t0.Add(123 * time.Millisecond)
	for what, got := range map[string]time.Time{"inserted": tk.CreatedAt, "read": get(t, s, tk.ID).CreatedAt} {
		if !got.Equal(want) {
			t.Errorf("%s CreatedAt = %v, want %v", what, got, want)
		}
		checkUTC(t, what, got)
	}

	later := now.Add(time.Second)
	claimed := claim(t, s, "127.0.0.1:8001", later)
	wantStart := want.Add(time.Second)
	if !claimed.StartedAt.Equal(wantStart) || !claimed.LeaseExpiresAt.Equal(wantStart.Add(leaseTTL)) {
		t.Errorf("StartedAt, LeaseExpiresAt = %v, %v; want %v, %v",
			claimed.StartedAt, claimed.LeaseExpiresAt, wantStart, wantStart.Add(leaseTTL))
	}
	checkUTC(t, "claimed", claimed.StartedAt, claimed.LeaseExpiresAt, claimed.UpdatedAt)
}

func testTaskSeqGrows(t *testing.T, s store.Store) {
	var last int64
	for i := range 5 {
		tk := insert(t, s, store.TaskInsertParams{Now: at(5 - i)}) // Seq follows inserts, not times
		if i > 0 && tk.Seq <= last {
			t.Fatalf("insert %d: Seq = %d, want > %d", i, tk.Seq, last)
		}
		if got := get(t, s, tk.ID).Seq; got != tk.Seq {
			t.Fatalf("TaskGet Seq = %d, want %d", got, tk.Seq)
		}
		last = tk.Seq
	}
}

func testTaskCounts(t *testing.T, s store.Store) {
	want := map[task.Status]int{
		task.StatusPending: 3, task.StatusRunning: 2, task.StatusCompleted: 1,
		task.StatusFailed: 1, task.StatusCancelled: 2,
	}
	withStatus(t, s, "alice")
	extraRunning := insert(t, s, store.TaskInsertParams{Priority: 9, Now: at(10)})
	claimID(t, s, extraRunning.ID, "127.0.0.1:8002", at(10))
	move(t, s, insert(t, s, store.TaskInsertParams{Now: at(11)}), task.StatusCancelled, at(11))
	insert(t, s, store.TaskInsertParams{Now: at(12)})
	insert(t, s, store.TaskInsertParams{Now: at(13)})

	got, err := s.TaskCounts(t.Context())
	must(t, "TaskCounts", err)
	diff(t, "TaskCounts", want, got)
}

func testTaskCountsEmpty(t *testing.T, s store.Store) {
	got, err := s.TaskCounts(t.Context())
	must(t, "TaskCounts", err)
	for _, st := range task.AllStatuses {
		n, ok := got[st]
		if !ok || n != 0 {
			t.Errorf("count[%s] = %d, %v; want 0, true", st, n, ok)
		}
	}
	if len(got) != len(task.AllStatuses) {
		t.Errorf("TaskCounts has %d keys, want %d: %v", len(got), len(task.AllStatuses), got)
	}
}

// testTaskRequires checks that the labels a task requires come back from
// every read: get, list, claim, running list, finish.
func testTaskRequires(t *testing.T, s store.Store) {
	requires := map[string]string{"gpu": "a100"}
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Requires: requires, Now: at(1)})
	plain := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(2)})
	diff(t, "TaskGet Requires", requires, get(t, s, tk.ID).Requires)
	if got := get(t, s, plain.ID).Requires; got != nil {
		t.Errorf("TaskGet Requires of a task without = %v, want nil", got)
	}
	list, err := s.TaskList(t.Context(), &store.TaskListParams{})
	must(t, "TaskList", err)
	for _, item := range list.Items {
		if item.ID == tk.ID {
			diff(t, "TaskList item Requires", requires, item.Requires)
		}
	}
	claimed := claimID(t, s, tk.ID, "127.0.0.1:8001", at(3))
	diff(t, "TaskClaim Requires", requires, claimed.Requires)
	running, err := s.TaskListRunning(t.Context(), &store.TaskListRunningParams{})
	must(t, "TaskListRunning", err)
	if len(running) != 1 {
		t.Fatalf("TaskListRunning = %d tasks, want 1", len(running))
	}
	diff(t, "TaskListRunning Requires", requires, running[0].Requires)
	done := finish(t, s, tk.ID, task.StatusRunning, task.StatusCompleted, at(4))
	diff(t, "TaskFinish Requires", requires, done.Requires)
}
