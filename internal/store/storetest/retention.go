package storetest

import (
	"slices"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func retentionCases() []testCase {
	return []testCase{
		{"TaskExpired", testTaskExpired},
		{"TaskExpiredLimit", testTaskExpiredLimit},
		{"TaskDelete", testTaskDelete},
		{"TaskDeleteWebhooks", testTaskDeleteWebhooks},
		{"TaskPin", testTaskPin},
		{"FileExpired", testFileExpired},
		{"FilePin", testFilePin},
		{"PinMissing", testPinMissing},
	}
}

// expired calls TaskExpired or FileExpired before second sec.
func expired(t *testing.T, s store.Store, files bool, sec, limit int) []string {
	t.Helper()
	p := &store.ExpiredParams{Before: at(sec), Limit: limit}
	var got []string
	var err error
	if files {
		got, err = s.FileExpired(t.Context(), p)
	} else {
		got, err = s.TaskExpired(t.Context(), p)
	}
	must(t, "expired", err)
	return got
}

// testTaskExpired: only finished tasks that finished before the cutoff,
// oldest finished first; pending and running ones never, whatever their age.
func testTaskExpired(t *testing.T, s store.Store) {
	by := withStatus(t, s, "alice") // finished at seconds 1 (completed), 3 (failed), 4 (cancelled)
	// Created first, finished last: its age counts from its end.
	late := insert(t, s, store.TaskInsertParams{Owner: "bob", Now: at(0)})
	finish(t, s, late.ID, task.StatusPending, task.StatusFailed, at(50))

	diff(t, "expired before 0", []string(nil), expired(t, s, false, 0, 0))
	diff(t, "expired before 4", []string{by[task.StatusCompleted].ID, by[task.StatusFailed].ID}, expired(t, s, false, 4, 0))
	diff(t, "expired before 49", []string{by[task.StatusCompleted].ID, by[task.StatusFailed].ID, by[task.StatusCancelled].ID},
		expired(t, s, false, 49, 0))
	all := expired(t, s, false, 1000, 0)
	diff(t, "expired before 1000", []string{by[task.StatusCompleted].ID, by[task.StatusFailed].ID, by[task.StatusCancelled].ID, late.ID}, all)
	for _, st := range []task.Status{task.StatusPending, task.StatusRunning} {
		if slices.Contains(all, by[st].ID) {
			t.Errorf("a %s task is expired", st)
		}
	}
}

func testTaskExpiredLimit(t *testing.T, s store.Store) {
	var want []string
	for i := range 5 {
		tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(i)})
		finish(t, s, tk.ID, task.StatusPending, task.StatusCancelled, at(10+i))
		want = append(want, tk.ID)
	}
	diff(t, "first batch", want[:2], expired(t, s, false, 100, 2))
}

// testTaskDelete: a finished task goes for good (get, lists and counts);
// a pending, running or pinned one is a conflict; a missing one not found.
func testTaskDelete(t *testing.T, s store.Store) {
	by := withStatus(t, s, "alice")
	for _, st := range []task.Status{task.StatusPending, task.StatusRunning} {
		wantErr(t, "TaskDelete "+string(st), s.TaskDelete(t.Context(), by[st].ID), store.ErrConflict)
	}
	wantErr(t, "TaskDelete missing", s.TaskDelete(t.Context(), newID()), store.ErrNotFound)
	pinned := by[task.StatusCancelled]
	_, err := s.TaskPin(t.Context(), &store.PinParams{ID: pinned.ID, Pinned: true})
	must(t, "TaskPin", err)
	wantErr(t, "TaskDelete pinned", s.TaskDelete(t.Context(), pinned.ID), store.ErrConflict)

	for _, st := range []task.Status{task.StatusCompleted, task.StatusFailed} {
		must(t, "TaskDelete "+string(st), s.TaskDelete(t.Context(), by[st].ID))
		_, err := s.TaskGet(t.Context(), by[st].ID)
		wantErr(t, "TaskGet deleted", err, store.ErrNotFound)
		wantErr(t, "TaskDelete again", s.TaskDelete(t.Context(), by[st].ID), store.ErrNotFound)
	}
	counts, err := s.TaskCounts(t.Context())
	must(t, "TaskCounts", err)
	diff(t, "counts", map[task.Status]int{task.StatusPending: 1, task.StatusRunning: 1, task.StatusCompleted: 0,
		task.StatusFailed: 0, task.StatusCancelled: 1}, counts)
	for _, p := range []store.TaskListParams{{}, {Owner: "alice"}, {Statuses: []task.Status{task.StatusCompleted, task.StatusFailed}},
		{Owner: "alice", Statuses: []task.Status{task.StatusCompleted}}} {
		res, err := s.TaskList(t.Context(), &p)
		must(t, "TaskList", err)
		for _, it := range res.Items {
			if it.ID == by[task.StatusCompleted].ID || it.ID == by[task.StatusFailed].ID {
				t.Errorf("TaskList %+v lists deleted task %s", p, it.ID)
			}
		}
		if want := len(res.Items); res.Total != want {
			t.Errorf("TaskList %+v: total %d, items %d", p, res.Total, want)
		}
	}
	diff(t, "expired after delete", []string(nil), expired(t, s, false, 1000, 0))
	// The queue still works around the deleted tasks.
	claimID(t, s, by[task.StatusPending].ID, "127.0.0.1:8002", at(20))
}

// testTaskDeleteWebhooks: a deleted task takes its own webhook
// subscriptions and its deliveries (pending or done) with it; another
// task's, and the owner's subscriptions for all tasks, stay.
func testTaskDeleteWebhooks(t *testing.T, s store.Store) {
	by := withStatus(t, s, "alice")
	gone, kept := by[task.StatusCompleted], by[task.StatusFailed]
	own := sub(t, s, "alice", gone.ID)
	all := sub(t, s, "alice", "")
	keptSub := sub(t, s, "alice", kept.ID)
	enqueue(t, s, "ev-gone-1", "task.completed", gone.ID, "alice", at(10))
	enqueue(t, s, "ev-kept-1", "task.failed", kept.ID, "alice", at(10))
	// One delivery of the deleted task is done, the other still pending.
	recorded := false
	for _, d := range whClaim(t, s, "r1", 10, at(10)) {
		if d.TaskID != gone.ID || recorded {
			continue
		}
		_, err := s.WebhookRecord(t.Context(), &store.WebhookRecordParams{ID: d.ID, Holder: "r1",
			State: store.DeliveryDelivered, Log: []store.WebhookAttempt{{At: at(10), Status: 200}}, Now: at(10)})
		must(t, "WebhookRecord", err)
		recorded = true
	}
	if !recorded {
		t.Fatal("no delivery of the task to delete was claimed")
	}
	must(t, "TaskDelete", s.TaskDelete(t.Context(), gone.ID))

	ds, err := s.WebhookDeliveries(t.Context(), gone.ID)
	must(t, "WebhookDeliveries", err)
	if len(ds) != 0 {
		t.Errorf("the deleted task keeps %d deliveries", len(ds))
	}
	_, err = s.WebhookSubGet(t.Context(), own.ID)
	wantErr(t, "the deleted task's subscription", err, store.ErrNotFound)
	for _, w := range []*store.WebhookSub{all, keptSub} {
		_, err := s.WebhookSubGet(t.Context(), w.ID)
		must(t, "another subscription", err)
	}
	ds, err = s.WebhookDeliveries(t.Context(), kept.ID)
	must(t, "WebhookDeliveries", err)
	if len(ds) != 2 { // to keptSub and to all
		t.Errorf("the kept task has %d deliveries, want 2", len(ds))
	}
	// What is left to deliver is the kept task's only.
	left := whClaim(t, s, "r2", 10, at(10_000))
	for _, d := range left {
		if d.TaskID != kept.ID {
			t.Errorf("claimed a delivery of task %s", d.TaskID)
		}
	}
	if len(left) != 2 {
		t.Errorf("claimed %d deliveries, want the kept task's 2", len(left))
	}
}

// testTaskPin: a pinned task is not expired and its files neither;
// unpinned, both are again.
func testTaskPin(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	f := newFile(t, s, "alice", tk.ID, 1)
	got, err := s.TaskPin(t.Context(), &store.PinParams{ID: tk.ID, Pinned: true})
	must(t, "TaskPin", err)
	if !got.Pinned || !get(t, s, tk.ID).Pinned {
		t.Fatalf("pinned task reads Pinned=%v, then %v", got.Pinned, get(t, s, tk.ID).Pinned)
	}
	finish(t, s, tk.ID, task.StatusPending, task.StatusCancelled, at(2)) // pinned before it ended
	late := newFile(t, s, "alice", tk.ID, 3)                             // an output stored after the pin
	diff(t, "expired tasks while pinned", []string(nil), expired(t, s, false, 1000, 0))
	diff(t, "expired files while pinned", []string(nil), expired(t, s, true, 1000, 0))
	res, err := s.TaskList(t.Context(), &store.TaskListParams{})
	must(t, "TaskList", err)
	if len(res.Items) != 1 || !res.Items[0].Pinned {
		t.Errorf("TaskList items %+v, want the pinned task", res.Items)
	}

	got, err = s.TaskPin(t.Context(), &store.PinParams{ID: tk.ID, Pinned: false})
	must(t, "TaskPin false", err)
	if got.Pinned {
		t.Error("unpinned task reads Pinned")
	}
	diff(t, "expired tasks unpinned", []string{tk.ID}, expired(t, s, false, 1000, 0))
	diff(t, "expired files unpinned", []string{f.ID, late.ID}, expired(t, s, true, 1000, 0))
}

// testFileExpired: files created before the cutoff, oldest first, within
// the limit; pinned files are left out.
func testFileExpired(t *testing.T, s store.Store) {
	a := newFile(t, s, "alice", "", 1)
	b := newFile(t, s, "bob", newID(), 2)
	c := newFile(t, s, "alice", "", 3)
	d := newFile(t, s, "alice", "", 10)
	diff(t, "before 3", []string{a.ID, b.ID}, expired(t, s, true, 3, 0))
	diff(t, "limit", []string{a.ID}, expired(t, s, true, 100, 1))
	diff(t, "all", []string{a.ID, b.ID, c.ID, d.ID}, expired(t, s, true, 100, 0))
	must(t, "FileDelete", s.FileDelete(t.Context(), a.ID))
	diff(t, "after delete", []string{b.ID, c.ID}, expired(t, s, true, 4, 0))
}

func testFilePin(t *testing.T, s store.Store) {
	a := newFile(t, s, "alice", "", 1)
	b := newFile(t, s, "alice", "", 2)
	got, err := s.FilePin(t.Context(), &store.PinParams{ID: a.ID, Pinned: true})
	must(t, "FilePin", err)
	if !got.Pinned {
		t.Error("FilePin returned an unpinned file")
	}
	read, err := s.FileGet(t.Context(), a.ID)
	must(t, "FileGet", err)
	if !read.Pinned {
		t.Error("pinned file reads unpinned")
	}
	diff(t, "expired with a pinned file", []string{b.ID}, expired(t, s, true, 100, 0))
	_, err = s.FilePin(t.Context(), &store.PinParams{ID: a.ID, Pinned: false})
	must(t, "FilePin false", err)
	diff(t, "expired unpinned", []string{a.ID, b.ID}, expired(t, s, true, 100, 0))
}

func testPinMissing(t *testing.T, s store.Store) {
	_, err := s.TaskPin(t.Context(), &store.PinParams{ID: newID(), Pinned: true})
	wantErr(t, "TaskPin missing", err, store.ErrNotFound)
	_, err = s.FilePin(t.Context(), &store.PinParams{ID: newID(), Pinned: true})
	wantErr(t, "FilePin missing", err, store.ErrNotFound)
}
