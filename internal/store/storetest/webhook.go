package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

func webhookCases() []testCase {
	return []testCase{
		{"Subscriptions", testWebhookSubs},
		{"EnqueueMatches", testWebhookEnqueueMatches},
		{"EnqueueOnce", testWebhookEnqueueOnce},
		{"ClaimLease", testWebhookClaimLease},
		{"RecordRetryAndEnd", testWebhookRecord},
		{"ConcurrentClaims", testWebhookConcurrentClaims},
	}
}

func sub(t *testing.T, s store.Store, owner, taskID string, events ...string) *store.WebhookSub {
	t.Helper()
	w := &store.WebhookSub{ID: newID(), Owner: owner, TaskID: taskID, URL: "https://example.com/hook/" + owner,
		Secret: "whsec_c2VjcmV0", Events: events, CreatedAt: t0}
	must(t, "WebhookSubInsert", s.WebhookSubInsert(t.Context(), w))
	return w
}

func enqueue(t *testing.T, s store.Store, event, typ, taskID, owner string, now time.Time) int {
	t.Helper()
	n, err := s.WebhookEnqueue(t.Context(), &store.WebhookEnqueueParams{
		EventID: event, Type: typ, TaskID: taskID, Owner: owner, Payload: []byte(`{"type":"` + typ + `"}`), Now: now,
	})
	must(t, "WebhookEnqueue", err)
	return n
}

func whClaim(t *testing.T, s store.Store, holder string, limit int, now time.Time) []*store.WebhookDelivery {
	t.Helper()
	ds, err := s.WebhookClaim(t.Context(), &store.WebhookClaimParams{Holder: holder, Limit: limit, LeaseTTL: time.Minute, Now: now})
	must(t, "WebhookClaim", err)
	return ds
}

func testWebhookSubs(t *testing.T, s store.Store) {
	a1 := sub(t, s, "alice", "", "task.completed", "task.failed")
	a2 := sub(t, s, "alice", "")
	b := sub(t, s, "bob", "")
	sub(t, s, "alice", newID()) // a task's own: not listed
	wantErr(t, "duplicate id", s.WebhookSubInsert(t.Context(), a1), store.ErrConflict)

	got, err := s.WebhookSubGet(t.Context(), a1.ID)
	must(t, "WebhookSubGet", err)
	diff(t, "subscription", a1, got)
	_, err = s.WebhookSubGet(t.Context(), newID())
	wantErr(t, "get unknown", err, store.ErrNotFound)

	list, err := s.WebhookSubList(t.Context(), &store.WebhookSubListParams{Owner: "alice"})
	must(t, "WebhookSubList", err)
	sorted := cmpopts.SortSlices(func(x, y *store.WebhookSub) bool { return x.ID < y.ID })
	diff(t, "alice's subscriptions", []*store.WebhookSub{a1, a2}, list, sorted)
	all, err := s.WebhookSubList(t.Context(), &store.WebhookSubListParams{})
	must(t, "WebhookSubList all", err)
	diff(t, "every subscription", []*store.WebhookSub{a1, a2, b}, all, sorted)

	must(t, "WebhookSubDelete", s.WebhookSubDelete(t.Context(), a1.ID))
	wantErr(t, "delete again", s.WebhookSubDelete(t.Context(), a1.ID), store.ErrNotFound)
	list, err = s.WebhookSubList(t.Context(), &store.WebhookSubListParams{Owner: "alice"})
	must(t, "WebhookSubList after delete", err)
	diff(t, "alice's subscriptions after delete", []*store.WebhookSub{a2}, list)
	// A deleted subscription gets no new delivery.
	if n := enqueue(t, s, "e1", "task.completed", newID(), "alice", t0); n != 1 {
		t.Fatalf("enqueue after delete added %d deliveries, want 1 (a2 only)", n)
	}
}

func testWebhookEnqueueMatches(t *testing.T, s store.Store) {
	taskID := newID()
	own := sub(t, s, "alice", taskID, "task.completed")
	all := sub(t, s, "alice", "")
	finals := sub(t, s, "alice", "", "task.failed")
	sub(t, s, "bob", "")            // another owner's
	sub(t, s, "alice", newID(), "") // another task's

	if n := enqueue(t, s, "e-run", "task.running", taskID, "alice", t0); n != 1 {
		t.Fatalf("task.running: %d deliveries, want 1 (the subscription for all events)", n)
	}
	if n := enqueue(t, s, "e-done", "task.completed", taskID, "alice", at(1)); n != 2 {
		t.Fatalf("task.completed: %d deliveries, want 2 (the task's and the one for all events)", n)
	}
	ds, err := s.WebhookDeliveries(t.Context(), taskID)
	must(t, "WebhookDeliveries", err)
	type key struct{ Sub, Event, Type, State string }
	var got []key
	for _, d := range ds {
		got = append(got, key{d.SubID, d.EventID, d.Type, d.State})
		if d.ID != d.SubID+"."+d.EventID || d.TaskID != taskID || d.Owner != "alice" || d.Attempts != 0 {
			t.Errorf("delivery %+v: want id sub.event, the task, its owner, no attempt", d)
		}
		checkUTC(t, "delivery", d.CreatedAt, d.NextAt, d.UpdatedAt)
	}
	want := []key{{all.ID, "e-run", "task.running", store.DeliveryPending}}
	done := []key{{own.ID, "e-done", "task.completed", store.DeliveryPending}, {all.ID, "e-done", "task.completed", store.DeliveryPending}}
	if own.ID > all.ID {
		done[0], done[1] = done[1], done[0]
	}
	diff(t, "deliveries, oldest first", append(want, done...), got)
	if ds[1].URL != own.URL && ds[1].URL != all.URL || string(ds[0].Payload) != `{"type":"task.running"}` {
		t.Errorf("delivery lost its url or payload: %+v", ds[0])
	}
	_ = finals
}

func testWebhookEnqueueOnce(t *testing.T, s store.Store) {
	taskID := newID()
	sub(t, s, "alice", taskID)
	sub(t, s, "alice", "")
	if n := enqueue(t, s, "e1", "task.completed", taskID, "alice", t0); n != 2 {
		t.Fatalf("first enqueue: %d, want 2", n)
	}
	for range 3 {
		if n := enqueue(t, s, "e1", "task.completed", taskID, "alice", at(5)); n != 0 {
			t.Fatalf("same event again: %d deliveries added, want 0", n)
		}
	}
	ds, err := s.WebhookDeliveries(t.Context(), taskID)
	must(t, "WebhookDeliveries", err)
	if len(ds) != 2 || !ds[0].CreatedAt.Equal(t0) {
		t.Fatalf("deliveries = %d (first created %v), want 2 created at %v", len(ds), ds[0].CreatedAt, t0)
	}
}

func testWebhookClaimLease(t *testing.T, s store.Store) {
	if _, ok, err := s.WebhookNextDue(t.Context()); err != nil || ok {
		t.Fatalf("WebhookNextDue on an empty queue = %v, %v; want none", ok, err)
	}
	taskID := newID()
	sub(t, s, "alice", taskID)
	enqueue(t, s, "e1", "task.completed", taskID, "alice", at(10))
	if got := whClaim(t, s, replicaA, 10, at(9)); len(got) != 0 {
		t.Fatalf("claimed %d deliveries before they were due", len(got))
	}
	next, ok, err := s.WebhookNextDue(t.Context())
	must(t, "WebhookNextDue", err)
	if !ok || !next.Equal(at(10)) {
		t.Fatalf("next due = %v, %v; want %v", next, ok, at(10))
	}
	got := whClaim(t, s, replicaA, 10, at(10))
	if len(got) != 1 || got[0].Secret != "whsec_c2VjcmV0" {
		t.Fatalf("claimed %+v, want the one delivery with its secret", got)
	}
	if again := whClaim(t, s, replicaB, 10, at(11)); len(again) != 0 {
		t.Fatalf("replica B claimed a delivery replica A holds")
	}
	next, _, _ = s.WebhookNextDue(t.Context())
	if want := at(10).Add(time.Minute); !next.Equal(want) {
		t.Fatalf("next due while held = %v, want the lease's end %v", next, want)
	}
	// The lease ends: B takes it, and A can no longer record it.
	taken := whClaim(t, s, replicaB, 10, at(10).Add(time.Minute))
	if len(taken) != 1 {
		t.Fatalf("after the lease ended B claimed %d, want 1", len(taken))
	}
	_, err = s.WebhookRecord(t.Context(), &store.WebhookRecordParams{ID: got[0].ID, Holder: replicaA, State: store.DeliveryDelivered, Now: at(100)})
	wantErr(t, "record by the former holder", err, store.ErrConflict)
	_, err = s.WebhookRecord(t.Context(), &store.WebhookRecordParams{ID: "nope.e1", Holder: replicaA, State: store.DeliveryDelivered, Now: at(100)})
	wantErr(t, "record unknown", err, store.ErrNotFound)
}

func testWebhookRecord(t *testing.T, s store.Store) {
	taskID := newID()
	sub(t, s, "alice", taskID)
	enqueue(t, s, "e1", "task.completed", taskID, "alice", t0)
	d := whClaim(t, s, replicaA, 1, t0)[0]
	a1 := store.WebhookAttempt{At: t0, Status: 503, Error: "HTTP 503", Duration: 12}
	rec, err := s.WebhookRecord(t.Context(), &store.WebhookRecordParams{ID: d.ID, Holder: replicaA,
		State: store.DeliveryPending, NextAt: at(30), Log: []store.WebhookAttempt{a1}, Now: at(1)})
	must(t, "WebhookRecord retry", err)
	if rec.State != store.DeliveryPending || rec.Attempts != 1 || !rec.NextAt.Equal(at(30)) {
		t.Fatalf("after a failed attempt: %+v, want pending, 1 attempt, due at %v", rec, at(30))
	}
	diff(t, "log", []store.WebhookAttempt{a1}, rec.Log)
	if got := whClaim(t, s, replicaA, 1, at(29)); len(got) != 0 {
		t.Fatal("claimed a delivery before its retry was due")
	}
	d = whClaim(t, s, replicaB, 1, at(30))[0]
	diff(t, "claimed log", []store.WebhookAttempt{a1}, d.Log)
	// The log keeps the newest MaxWebhookLog attempts; Attempts counts all.
	var log []store.WebhookAttempt
	for i := range store.MaxWebhookLog + 5 {
		log = append(log, store.WebhookAttempt{At: at(i), Status: 500 + i%3})
	}
	log = append(log, store.WebhookAttempt{At: at(31), Status: 204, Duration: 3})
	rec, err = s.WebhookRecord(t.Context(), &store.WebhookRecordParams{ID: d.ID, Holder: replicaB,
		State: store.DeliveryDelivered, Log: log, Now: at(31)})
	must(t, "WebhookRecord delivered", err)
	if rec.State != store.DeliveryDelivered || rec.Attempts != 2 || len(rec.Log) != store.MaxWebhookLog {
		t.Fatalf("delivered: state %s, %d attempts, %d logged; want delivered, 2, %d", rec.State, rec.Attempts, len(rec.Log), store.MaxWebhookLog)
	}
	diff(t, "newest attempt", log[len(log)-1], rec.Log[len(rec.Log)-1])
	if got := whClaim(t, s, replicaA, 10, at(1000)); len(got) != 0 {
		t.Fatal("claimed a delivered delivery")
	}
	if _, ok, _ := s.WebhookNextDue(t.Context()); ok {
		t.Fatal("a delivered delivery is still due")
	}
	_, err = s.WebhookRecord(t.Context(), &store.WebhookRecordParams{ID: d.ID, Holder: replicaB, State: store.DeliveryFailed, Now: at(32)})
	wantErr(t, "record a delivered delivery", err, store.ErrConflict)
	ds, err := s.WebhookDeliveries(t.Context(), taskID)
	must(t, "WebhookDeliveries", err)
	if len(ds) != 1 || ds[0].State != store.DeliveryDelivered || ds[0].Log[len(ds[0].Log)-1].Status != 204 {
		t.Fatalf("the task's log = %+v, want the one delivery, delivered with 204", ds)
	}
}

// testWebhookConcurrentClaims: replicas claiming at once take each
// delivery once.
func testWebhookConcurrentClaims(t *testing.T, s store.Store) {
	taskID := newID()
	sub(t, s, "alice", taskID)
	const events = 40
	for i := range events {
		enqueue(t, s, newID(), "task.completed", taskID, "alice", t0.Add(time.Duration(i)*time.Millisecond))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, holder := range []string{"r1", "r2", "r3", "r4"} {
		wg.Go(func() {
			for {
				ds, err := s.WebhookClaim(t.Context(), &store.WebhookClaimParams{Holder: holder, Limit: 3, LeaseTTL: time.Minute, Now: at(1)})
				if err != nil {
					t.Error(err)
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != events {
		t.Fatalf("claimed %d distinct deliveries, want %d", len(seen), events)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("delivery %s claimed %d times", id, n)
		}
	}
}
