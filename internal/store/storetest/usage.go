package storetest

import (
	"errors"
	"sync"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func usageCases() []testCase {
	return []testCase{
		{"Pending", testUsagePending},
		{"StoredBytes", testUsageStoredBytes},
		{"InsertMaxPending", testInsertMaxPending},
		{"InsertMaxPendingConcurrent", testInsertMaxPendingConcurrent},
	}
}

// usage reads owner's usage.
func usage(t *testing.T, s store.Store, owner string) store.Usage {
	t.Helper()
	u, err := s.UsageGet(t.Context(), &store.UsageGetParams{Owner: owner})
	must(t, "UsageGet "+owner, err)
	return u
}

func wantPending(t *testing.T, s store.Store, owner string, want int) {
	t.Helper()
	if got := usage(t, s, owner).Pending; got != want {
		t.Fatalf("UsageGet(%q).Pending = %d, want %d", owner, got, want)
	}
}

// testUsagePending: an owner's pending count follows every move of their
// tasks in and out of the queue, and no one else's.
func testUsagePending(t *testing.T, s store.Store) {
	wantPending(t, s, "alice", 0)
	first := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	second := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(1)})
	third := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(2)})
	insert(t, s, store.TaskInsertParams{Owner: "bob", Now: at(3)})
	wantPending(t, s, "alice", 3)
	wantPending(t, s, "bob", 1)

	claimID(t, s, first.ID, "127.0.0.1:8001", at(4))
	wantPending(t, s, "alice", 2)
	_, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: first.ID, LeaseOwner: replicaA, Now: at(5)})
	must(t, "TaskRequeue", err)
	wantPending(t, s, "alice", 3)
	move(t, s, second, task.StatusCancelled, at(6))
	finish(t, s, third.ID, task.StatusPending, task.StatusFailed, at(7))
	wantPending(t, s, "alice", 1)
	wantPending(t, s, "bob", 1)
	wantPending(t, s, "carol", 0)
}

// testUsageStoredBytes: an owner's stored bytes sum their uploads and
// outputs, and drop when a record is deleted, whether the files were stored
// before the owner's usage was first read (bob) or after (alice).
func testUsageStoredBytes(t *testing.T, s store.Store) {
	bobs := &file.File{ID: newID(), Owner: "bob", TaskID: newID(), NodeID: "9", Filename: "big.mp4",
		ContentType: "video/mp4", Size: 7 << 40, CreatedAt: at(0)}
	must(t, "FileInsert bob's output", s.FileInsert(t.Context(), bobs))
	newFile(t, s, "bob", "", 3) // 1234 bytes
	if got := usage(t, s, "alice").StoredBytes; got != 0 {
		t.Fatalf("StoredBytes with no file = %d, want 0", got)
	}
	up := &file.File{ID: newID(), Owner: "alice", Filename: "in.png", ContentType: "image/png", Size: 1000, CreatedAt: at(1)}
	must(t, "FileInsert upload", s.FileInsert(t.Context(), up))
	out := &file.File{ID: newID(), Owner: "alice", TaskID: newID(), NodeID: "9", Filename: "out.png",
		ContentType: "image/png", Size: 5 << 30, CreatedAt: at(2)}
	must(t, "FileInsert output", s.FileInsert(t.Context(), out))
	if err := s.FileInsert(t.Context(), up); err == nil {
		t.Fatal("duplicate FileInsert succeeded")
	}
	if got, want := usage(t, s, "alice").StoredBytes, int64(1000+5<<30); got != want {
		t.Fatalf("alice's StoredBytes = %d, want %d (a refused duplicate counts once)", got, want)
	}
	must(t, "FileDelete", s.FileDelete(t.Context(), out.ID))
	if got := usage(t, s, "alice").StoredBytes; got != 1000 {
		t.Fatalf("alice's StoredBytes after deleting the output = %d, want 1000", got)
	}
	if got, want := usage(t, s, "bob").StoredBytes, int64(7<<40+1234); got != want {
		t.Fatalf("bob's StoredBytes = %d, want %d", got, want)
	}
	must(t, "FileDelete bob's output", s.FileDelete(t.Context(), bobs.ID))
	if got := usage(t, s, "bob").StoredBytes; got != 1234 {
		t.Fatalf("bob's StoredBytes after deleting the output = %d, want 1234", got)
	}
}

// testInsertMaxPending: an insert past the owner's MaxPending is ErrLimit
// and writes nothing; other owners and unbounded inserts are not held back,
// and room made by a claim is used again.
func testInsertMaxPending(t *testing.T, s store.Store) {
	limited := func(owner string) (string, error) {
		p := &store.TaskInsertParams{ID: newID(), Owner: owner, Workflow: []byte(`{}`), MaxPending: 2, Now: at(1)}
		_, err := s.TaskInsert(t.Context(), p)
		return p.ID, err
	}
	first, err := limited("alice")
	must(t, "first insert", err)
	_, err = limited("alice")
	must(t, "second insert", err)
	refused, err := limited("alice")
	wantErr(t, "third insert with MaxPending 2", err, store.ErrLimit)
	_, err = s.TaskGet(t.Context(), refused)
	wantErr(t, "TaskGet of the refused task", err, store.ErrNotFound)
	wantPending(t, s, "alice", 2)
	counts, err := s.TaskCounts(t.Context())
	must(t, "TaskCounts", err)
	if counts[task.StatusPending] != 2 {
		t.Fatalf("pending count = %d after a refused insert, want 2", counts[task.StatusPending])
	}

	_, err = limited("bob")
	must(t, "another owner's insert", err)
	insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(2)}) // MaxPending 0: no bound
	wantPending(t, s, "alice", 3)

	claimID(t, s, first, "127.0.0.1:8001", at(3))
	_, err = limited("alice")
	wantErr(t, "insert at 2 pending", err, store.ErrLimit)
	move(t, s, get(t, s, pendingOf(t, s, "alice")), task.StatusCancelled, at(4))
	_, err = limited("alice")
	must(t, "insert once below the bound", err)
}

// pendingOf returns the id of one of owner's pending tasks.
func pendingOf(t *testing.T, s store.Store, owner string) string {
	t.Helper()
	res, err := s.TaskList(t.Context(), &store.TaskListParams{Owner: owner, Statuses: []task.Status{task.StatusPending}, Limit: 1})
	must(t, "TaskList", err)
	if len(res.Items) == 0 {
		t.Fatalf("%s has no pending task", owner)
	}
	return res.Items[0].ID
}

// testInsertMaxPendingConcurrent: concurrent inserts never pass the bound.
func testInsertMaxPendingConcurrent(t *testing.T, s store.Store) {
	const inserts, bound = 40, 5
	var wg sync.WaitGroup
	var mu sync.Mutex // guards ok and errs
	ok, errs := 0, []error{}
	for i := range inserts {
		wg.Go(func() {
			_, err := s.TaskInsert(t.Context(), &store.TaskInsertParams{
				ID: newID(), Owner: "alice", Workflow: []byte(`{}`), MaxPending: bound, Now: at(i),
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrLimit):
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("TaskInsert errors: %v", errs)
	}
	if ok != bound {
		t.Errorf("%d of %d concurrent inserts succeeded with MaxPending %d, want %d", ok, inserts, bound, bound)
	}
	wantPending(t, s, "alice", bound)
}
