// Package storetest is the conformance suite every store.Store passes
// unchanged, in the manner of river's riverdrivertest: one suite, run by each
// implementation's own test with a constructor for fresh stores.
//
// The suite talks to a store through the store.Store interface only. It never
// sleeps and never reads the clock to decide an outcome: every time a store
// sees comes from a Now field the suite passes in. Waits for asynchronous
// delivery (pub/sub) use a generous deadline that only bounds a hang.
//
// Decisions the suite pins down, beyond the interface's doc comments:
//   - Times come back in UTC, truncated to the millisecond; zero means "not yet".
//   - Seq grows with every insert; a requeued task keeps its Seq, so it goes
//     back to its place in the line.
//   - TaskList items carry every field except Workflow and Params; TaskClaim
//     and TaskListRunning return whole tasks.
//   - TaskFinish and TaskRequeue keep InstanceID and Progress; TaskRequeue
//     also keeps Attempts.
//   - Renewing a task's lease does not count as an update of the task.
//   - JSON carried in Result, Error.NodeErrors and Event.Data round-trips
//     byte for byte when it is compact.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Run runs the whole suite. newStore must return a fresh, empty store that
// shares nothing with any other store it returned, and close it at the test's
// cleanup. Close must be safe to call twice: some subtests close the store
// themselves. Subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Task", taskCases()},
		{"TaskList", listCases()},
		{"Queue", queueCases()},
		{"Steps", stepCases()},
		{"Run", runCases()},
		{"Instance", instanceCases()},
		{"Catalog", catalogCases()},
		{"Cap", capCases()},
		{"File", fileCases()},
		{"Key", keyCases()},
		{"Usage", usageCases()},
		{"Retention", retentionCases()},
		{"Config", configCases()},
		{"Lease", leaseCases()},
		{"Webhook", webhookCases()},
		{"PubSub", pubsubCases()},
		{"EventLog", eventLogCases()},
		{"Store", storeCases()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.fn(t, newStore(t))
				})
			}
		})
	}
}

// testCase is one subtest; it gets its own fresh store.
type testCase struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// waitTimeout bounds waits for asynchronous delivery. It only turns a hang
// into a failure; no outcome depends on it.
const waitTimeout = 10 * time.Second

const (
	replicaA = "replica-a"
	replicaB = "replica-b"
	leaseTTL = 30 * time.Second
)

// t0 is the suite's epoch. Every time the suite passes as Now is t0 plus
// whole milliseconds, except where sub-millisecond truncation is the point.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

// diffOpts compares domain values: nil and empty slices and maps are equal,
// times compare with Equal.
var diffOpts = cmp.Options{cmpopts.EquateEmpty()}

// ignoreSeq leaves Seq out of a comparison with a hand-built task.
var ignoreSeq = cmpopts.IgnoreFields(task.Task{}, "Seq")

func newID() string { return uuid.NewString() }

// wantErr fails unless err matches target (nil target: no error).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	switch {
	case target == nil && err != nil:
		t.Fatalf("%s: unexpected error: %v", what, err)
	case target != nil && !errors.Is(err, target):
		t.Fatalf("%s: error = %v, want %v", what, err, target)
	}
}

// must fails the test on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// diff fails with a -want +got diff when want and got differ.
func diff(t *testing.T, what string, want, got any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(want, got, append(cmp.Options{diffOpts}, opts...)...); d != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// checkUTC fails when a non-zero time is not in UTC.
func checkUTC(t *testing.T, what string, times ...time.Time) {
	t.Helper()
	for i, tm := range times {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("%s: time %d = %v, want UTC", what, i, tm)
		}
	}
}

// insert adds a task, filling ID, Workflow and Now when unset.
func insert(t *testing.T, s store.Store, p store.TaskInsertParams) *task.Task {
	t.Helper()
	if p.ID == "" {
		p.ID = newID()
	}
	if p.Workflow == nil {
		p.Workflow = []byte(`{"1":{"class_type":"KSampler","inputs":{"seed":1}}}`)
	}
	if p.Now.IsZero() {
		p.Now = t0
	}
	tk, err := s.TaskInsert(t.Context(), &p)
	must(t, "TaskInsert", err)
	return tk
}

// get reads a task that must exist.
func get(t *testing.T, s store.Store, id string) *task.Task {
	t.Helper()
	tk, err := s.TaskGet(t.Context(), id)
	must(t, "TaskGet "+id, err)
	return tk
}

// claim takes the head of the queue for instance under replicaA's lease.
func claim(t *testing.T, s store.Store, instanceID string, now time.Time) *task.Task {
	t.Helper()
	tk, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{
		InstanceID: instanceID, LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: now,
	})
	must(t, "TaskClaim", err)
	return tk
}

// claimID claims and checks that the claimed task is id.
func claimID(t *testing.T, s store.Store, id, instanceID string, now time.Time) *task.Task {
	t.Helper()
	tk := claim(t, s, instanceID, now)
	if tk.ID != id {
		t.Fatalf("claimed %s, want %s (create running tasks before other pending ones)", tk.ID, id)
	}
	return tk
}

// finish ends a task with replicaA's lease (or none for a pending task).
func finish(t *testing.T, s store.Store, id string, from, to task.Status, now time.Time) *task.Task {
	t.Helper()
	tk, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: id, From: []task.Status{from}, To: to, Now: now,
	})
	must(t, fmt.Sprintf("TaskFinish %s -> %s", from, to), err)
	return tk
}

// move takes a freshly inserted pending task to status at now.
func move(t *testing.T, s store.Store, tk *task.Task, status task.Status, now time.Time) *task.Task {
	t.Helper()
	switch status {
	case task.StatusPending:
		return tk
	case task.StatusRunning:
		return claimID(t, s, tk.ID, "127.0.0.1:8001", now)
	case task.StatusCompleted:
		claimID(t, s, tk.ID, "127.0.0.1:8001", now)
		return finish(t, s, tk.ID, task.StatusRunning, task.StatusCompleted, now)
	case task.StatusFailed:
		return finish(t, s, tk.ID, task.StatusPending, task.StatusFailed, now)
	case task.StatusCancelled:
		got, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: tk.ID, Now: now})
		must(t, "TaskRequestCancel", err)
		return got
	}
	t.Fatalf("move: unknown status %q", status)
	return nil
}

// withStatus inserts one task per status, running and completed first so the
// claims pick them, and returns them by status.
func withStatus(t *testing.T, s store.Store, owner string) map[task.Status]*task.Task {
	t.Helper()
	order := []task.Status{task.StatusRunning, task.StatusCompleted, task.StatusPending, task.StatusFailed, task.StatusCancelled}
	out := make(map[task.Status]*task.Task, len(order))
	for i, st := range order {
		tk := insert(t, s, store.TaskInsertParams{Owner: owner, Now: at(i)})
		out[st] = move(t, s, tk, st, at(i))
	}
	return out
}

// ids lists the ids of tasks, in order.
func ids(tasks []*task.Task) []string {
	out := make([]string, len(tasks))
	for i, tk := range tasks {
		out[i] = tk.ID
	}
	return out
}

// ctxWithCancel returns a context derived from the test's and its cancel.
func ctxWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
