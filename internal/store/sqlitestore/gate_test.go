package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// TestGateWaitEndsWithContext: a call waiting for the writer gives up when
// its context ends, and a call with a context already done never starts.
func TestGateWaitEndsWithContext(t *testing.T) {
	s := openFile(t)
	release := holdWriter(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("TaskClaim behind a busy writer: %v, want DeadlineExceeded", err)
	}
	release()

	done, cancelDone := context.WithCancel(t.Context())
	cancelDone()
	if _, err := s.TaskGet(done, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("TaskGet with a cancelled context: %v, want Canceled", err)
	}
	if _, err := s.TaskInsert(done, &store.TaskInsertParams{ID: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("TaskInsert with a cancelled context: %v, want Canceled", err)
	}
	if _, err := s.TaskGet(t.Context(), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TaskGet after a cancelled insert: %v, want ErrNotFound", err)
	}
}

// TestConcurrentCalls mixes writes, transactions and reads from many
// goroutines on one store, on a file and in memory, where both gates are
// one: nothing deadlocks and every task is claimed once.
func TestConcurrentCalls(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) *Store{
		"file":   func(t *testing.T) *Store { return openFile(t) },
		"memory": openMemory,
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			const workers, each = 8, 25
			claimed := make(chan string, workers*each)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						if err := taskRound(t.Context(), s, fmt.Sprintf("t-%d-%d", w, i), claimed); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(claimed)
			seen := map[string]bool{}
			for id := range claimed {
				if seen[id] {
					t.Errorf("task %s claimed twice", id)
				}
				seen[id] = true
			}
			if len(seen) != workers*each {
				t.Errorf("claimed %d tasks, want %d", len(seen), workers*each)
			}
		})
	}
}

// openMemory opens an in-memory store, closed at the test's cleanup.
func openMemory(t *testing.T) *Store {
	s, err := Open(t.Context(), memoryPath)
	mustOK(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// taskRound inserts task id, claims a task (not necessarily id) and sends
// its id to claimed, then lists and reads.
func taskRound(ctx context.Context, s *Store, id string, claimed chan<- string) error {
	if _, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: id, Workflow: []byte(`{}`), Now: time.UnixMilli(1)}); err != nil {
		return err
	}
	tk, err := s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i", LeaseOwner: "r", LeaseTTL: time.Minute, Now: time.UnixMilli(2)})
	if err != nil {
		return err
	}
	claimed <- tk.ID
	if _, err := s.TaskList(ctx, &store.TaskListParams{Limit: 5}); err != nil {
		return err
	}
	_, err = s.TaskGet(ctx, id)
	return err
}
