package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// holdWriter keeps the writer busy with a write of its own until the
// returned release is called.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, done := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.w.exec(t.Context(), func(context.Context, execer) error {
			close(started)
			<-done
			return nil
		})
		if err != nil {
			t.Errorf("holding write: %v", err)
		}
	})
	<-started
	var once sync.Once
	release = func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
	t.Cleanup(release)
	return release
}

// waitQueued waits until n writes queue behind the held writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.w.mu.Lock()
		queued := len(s.w.queue)
		s.w.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 10s, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchUndoesOnlyTheFailedWrite: writes queued behind a busy writer run
// in one transaction; one that fails is undone alone (even after it wrote),
// and the others commit.
func TestBatchUndoesOnlyTheFailedWrite(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) *Store{
		"file":   func(t *testing.T) *Store { return openFile(t) },
		"memory": openMemory,
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			release := holdWriter(t, s)
			boom := errors.New("boom")
			const n = 20
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					if i%2 == 0 {
						_, errs[i] = s.TaskInsert(t.Context(), &store.TaskInsertParams{ID: fmt.Sprintf("t-%d", i),
							Workflow: []byte(`{}`), Now: time.UnixMilli(1)})
						return
					}
					errs[i] = s.w.exec(t.Context(), func(ctx context.Context, ex execer) error {
						var holder string
						if err := ex.stmt(ctx, s.ws.leaseAcquire).QueryRowContext(ctx, sql.Named("name", fmt.Sprintf("l-%d", i)),
							sql.Named("holder", "x"), sql.Named("expires", 2), sql.Named("now", 1)).Scan(&holder); err != nil {
							return err
						}
						return boom
					})
				})
			}
			waitQueued(t, s, n)
			release()
			wg.Wait()
			for i, err := range errs {
				if want := error(nil); i%2 == 1 {
					if !errors.Is(err, boom) {
						t.Errorf("failing write %d: %v, want boom", i, err)
					}
				} else if err != want {
					t.Errorf("insert %d: %v", i, err)
				}
			}
			var tasks, leases, bodies int
			mustOK(t, s.read.QueryRowContext(t.Context(), `SELECT count(*) FROM tasks`).Scan(&tasks))
			mustOK(t, s.read.QueryRowContext(t.Context(), `SELECT count(*) FROM task_bodies`).Scan(&bodies))
			mustOK(t, s.read.QueryRowContext(t.Context(), `SELECT count(*) FROM leases`).Scan(&leases))
			if tasks != n/2 || bodies != n/2 || leases != 0 {
				t.Errorf("%d tasks, %d bodies, %d leases; want %d, %d, 0", tasks, bodies, leases, n/2, n/2)
			}
			if s.w.shared.Load() == 0 {
				t.Errorf("no transaction carried several writes")
			}
		})
	}
}

// TestWritesAfterClose fail instead of hanging.
func TestWritesAfterClose(t *testing.T) {
	s := openFile(t)
	mustOK(t, s.Close())
	_, err := s.TaskInsert(t.Context(), &store.TaskInsertParams{ID: "x", Workflow: []byte(`{}`), Now: time.UnixMilli(1)})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("TaskInsert after Close: %v, want ErrUnavailable", err)
	}
}

// TestBatchWritePanics: a write that panics fails alone, with an error, and
// the store goes on writing.
func TestBatchWritePanics(t *testing.T) {
	s := openFile(t)
	release := holdWriter(t, s)
	var wg sync.WaitGroup
	var panicErr, insertErr error
	wg.Go(func() {
		panicErr = s.w.exec(t.Context(), func(context.Context, execer) error { panic("bug") })
	})
	wg.Go(func() {
		_, insertErr = s.TaskInsert(t.Context(), &store.TaskInsertParams{ID: "ok", Workflow: []byte(`{}`), Now: time.UnixMilli(1)})
	})
	waitQueued(t, s, 2)
	release()
	wg.Wait()
	if panicErr == nil || !strings.Contains(panicErr.Error(), "panicked: bug") {
		t.Errorf("panicking write: %v, want a panic error", panicErr)
	}
	if insertErr != nil {
		t.Errorf("insert beside a panicking write: %v", insertErr)
	}
	if _, err := s.TaskInsert(t.Context(), &store.TaskInsertParams{ID: "after", Workflow: []byte(`{}`), Now: time.UnixMilli(1)}); err != nil {
		t.Errorf("insert after a panicking write: %v", err)
	}
}
