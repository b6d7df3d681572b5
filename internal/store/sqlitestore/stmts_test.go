package sqlitestore

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// TestStatementCache: each shape of TaskList's and FileList's SQL is
// prepared once, however often and with whatever values it runs.
func TestStatementCache(t *testing.T) {
	s := openFile(t)
	ctx := t.Context()
	lists := []*store.TaskListParams{
		{}, {Owner: "alice"}, {Statuses: []task.Status{task.StatusPending}},
		{Owner: "bob", Statuses: []task.Status{task.StatusRunning, task.StatusPending}},
	}
	for range 3 {
		for i, p := range lists {
			p.Offset = i
			_, err := s.TaskList(ctx, p)
			mustOK(t, err)
		}
		_, err := s.FileList(ctx, &store.FileListParams{Owner: "alice", TaskID: "t1"})
		mustOK(t, err)
	}
	// Three statements (total, page, page from the oldest end) per
	// single-status TaskList shape, two for the merge of two statuses and
	// two for FileList.
	if got, want := s.readCache.size(), 3*(len(lists)-1)+2+2; got != want {
		t.Errorf("cached statements = %d, want %d", got, want)
	}
}

// TestStatementCacheFull: past maxCached, statements are prepared for one
// use and still work.
func TestStatementCacheFull(t *testing.T) {
	s := openFile(t)
	ctx := t.Context()
	for i := range maxCached + 3 {
		stmts, release, err := s.cachedStmts(ctx, "SELECT "+strconv.Itoa(i))
		mustOK(t, err)
		var got int
		mustOK(t, stmts[0].QueryRowContext(ctx).Scan(&got))
		release()
		if got != i {
			t.Fatalf("SELECT %d = %d", i, got)
		}
	}
	if got := s.readCache.size(); got != maxCached {
		t.Errorf("cached statements = %d, want %d", got, maxCached)
	}
}

// TestClosedStore: after Close, calls fail instead of using closed
// statements.
func TestClosedStore(t *testing.T) {
	s := openFile(t)
	ctx := context.Background()
	mustOK(t, s.Close())
	if _, err := s.TaskGet(ctx, "x"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("TaskGet after Close: %v, want an error", err)
	}
	if _, err := s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i"}); err == nil {
		t.Error("TaskClaim after Close succeeded")
	}
	if _, err := s.TaskList(ctx, &store.TaskListParams{}); err == nil {
		t.Error("TaskList after Close succeeded")
	}
}
