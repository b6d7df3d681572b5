package storetest

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func webhookCases() []testCase {
	return []testCase{
		{"Subscriptions", testWebhookSubs},
		{"EnqueueMatches", testWebhookEnqueueMatches},
		{"EnqueueOnce", testWebhookEnqueueOnce},
		{"ClaimLease", testWebhookClaimLease},
		{"RecordRetryAndEnd", testWebhookRecord},
		{"ConcurrentClaims", testWebhookConcurrentClaims},
		{"StepsQueueDeliveries", testWebhookStepsQueue},
		{"RequeueAndCancelQueueDeliveries", testWebhookRequeueCancel},
		{"ClaimQueuesDeliveries", testWebhookClaim},
		{"RefusedStepQueuesNothing", testWebhookRefusedQueuesNothing},
		{"NoSubscriptionNoDelivery", testWebhookNoSubscription},
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

// pendingEvents are the events the API gives TaskInsert for a new task of
// owner, stamped now.
func pendingEvents(t *testing.T, id, owner string, now time.Time) []event.Event {
	t.Helper()
	evs, err := event.Pending(&task.Task{ID: id, Owner: owner, Status: task.StatusPending})
	must(t, "event.Pending", err)
	for i := range evs {
		evs[i].Time = now.UnixMilli()
	}
	return evs
}

// wantDeliveryIDs checks the ids of a task's deliveries, in any order.
func wantDeliveryIDs(t *testing.T, s store.Store, taskID string, want ...string) []*store.WebhookDelivery {
	t.Helper()
	ds, err := s.WebhookDeliveries(t.Context(), taskID)
	must(t, "WebhookDeliveries", err)
	var got []string
	for _, d := range ds {
		got = append(got, d.ID)
	}
	slices.Sort(got)
	slices.Sort(want)
	diff(t, "the task's deliveries", want, got)
	return ds
}

// loggedTypes reads the types of the events logged after seq after.
func loggedTypes(t *testing.T, s store.Store, after int64) []string {
	t.Helper()
	evs, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: after})
	must(t, "EventsAfter", err)
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// checkPayloads checks that each delivery of a task carries what
// store.WebhookEventOf makes of the logged event it comes from, byte for
// byte, and that its payload reads as documented.
func checkPayloads(t *testing.T, s store.Store, taskID string) {
	t.Helper()
	logged, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{})
	must(t, "EventsAfter", err)
	byID := map[string]store.WebhookEnqueueParams{}
	for _, ev := range logged {
		if p, ok := store.WebhookEventOf(ev); ok {
			byID[p.EventID] = p
		}
	}
	ds, err := s.WebhookDeliveries(t.Context(), taskID)
	must(t, "WebhookDeliveries", err)
	for _, d := range ds {
		want, ok := byID[d.EventID]
		if !ok {
			t.Errorf("delivery %s: no logged event is %s", d.ID, d.EventID)
			continue
		}
		if string(d.Payload) != string(want.Payload) || d.Type != want.Type || d.TaskID != taskID ||
			d.Owner != want.Owner || !d.CreatedAt.Equal(want.Now) || !d.NextAt.Equal(want.Now) {
			t.Errorf("delivery %s = %s %s of %s by %s at %v:\n%s\nwant %s %s of %s by %s at %v:\n%s", d.ID,
				d.EventID, d.Type, d.TaskID, d.Owner, d.CreatedAt, d.Payload,
				want.EventID, want.Type, want.TaskID, want.Owner, want.Now, want.Payload)
		}
		var body struct {
			Type      string `json:"type"`
			Timestamp string `json:"timestamp"`
			Data      struct {
				TaskID string `json:"taskId"`
				Status string `json:"status"`
			} `json:"data"`
		}
		if err := json.Unmarshal(d.Payload, &body); err != nil {
			t.Errorf("delivery %s: payload %s: %v", d.ID, d.Payload, err)
			continue
		}
		if body.Type != d.Type || body.Type != "task."+body.Data.Status || body.Data.TaskID != taskID ||
			body.Timestamp != store.WebhookTimestamp(d.CreatedAt) {
			t.Errorf("delivery %s: payload %s, want type %s = task.<data.status>, taskId %s, timestamp %s", d.ID,
				d.Payload, d.Type, taskID, store.WebhookTimestamp(d.CreatedAt))
		}
	}
}

// testWebhookStepsQueue: the steps that log a task's events queue their
// webhook deliveries themselves, in the same step: the insert (its
// task.pending), a Publish (the run's task.running), the finish (its
// task.completed, with the result). Each step that queued some also logs
// and publishes webhook_queued, after its events.
func testWebhookStepsQueue(t *testing.T, s store.Store) {
	id := newID()
	all := sub(t, s, "alice", "")
	own := sub(t, s, "alice", id, "task.completed")
	sub(t, s, "bob", "")
	live := subscribe(t, s, t.Context())

	insert(t, s, store.TaskInsertParams{ID: id, Owner: "alice", Now: at(0), Events: pendingEvents(t, id, "alice", at(0))})
	wantDeliveryIDs(t, s, id, all.ID+".evt_"+id+"_pending.0")
	diff(t, "the insert's events", []string{event.TypeTaskStatus, event.TypeTaskQueued, event.TypeWebhookQueued}, loggedTypes(t, s, 0))

	tk := claimID(t, s, id, "127.0.0.1:8001", at(1))
	running, err := event.New(event.TypeTaskStatus, tk, event.StatusOf(tk))
	must(t, "event.New", err)
	running.Time = at(2).UnixMilli()
	publish(t, s, running)
	wantDeliveryIDs(t, s, id, all.ID+".evt_"+id+"_pending.0", all.ID+".evt_"+id+"_running.1")
	diff(t, "the run's events", []string{event.TypeTaskStatus, event.TypeWebhookQueued}, loggedTypes(t, s, 3))

	result := &task.Result{Files: []string{"http://gw/files/f1/a.png"}, Outputs: map[string][]task.Output{
		"9": {{URL: "http://gw/files/f1/a.png", Filename: "a.png", Type: "output", Kind: "images", NodeID: "9", FileID: "f1"}}}}
	_, err = s.TaskFinish(t.Context(), &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusRunning},
		To: task.StatusCompleted, LeaseOwner: replicaA, Result: result, Now: at(3)})
	must(t, "TaskFinish", err)
	ds := wantDeliveryIDs(t, s, id, all.ID+".evt_"+id+"_pending.0", all.ID+".evt_"+id+"_running.1",
		all.ID+".evt_"+id+"_completed", own.ID+".evt_"+id+"_completed")
	diff(t, "the finish's events", []string{event.TypeTaskStatus, event.TypeTaskCompleted, event.TypeWebhookQueued}, loggedTypes(t, s, 5))
	checkPayloads(t, s, id)
	for _, d := range ds {
		if d.State != store.DeliveryPending || d.Attempts != 0 {
			t.Errorf("delivery %s: state %s, %d attempts; want pending, none", d.ID, d.State, d.Attempts)
		}
		if d.EventID != "evt_"+id+"_completed" {
			continue
		}
		var body struct {
			Data struct {
				Result *task.Result `json:"result"`
			} `json:"data"`
		}
		must(t, "decode payload", json.Unmarshal(d.Payload, &body))
		diff(t, "the completed payload's result", result, body.Data.Result)
	}
	// Subscribers get webhook_queued after the events of each step.
	var got []string
	for range 8 {
		ev := recv(t, live)
		got = append(got, ev.Type)
		if ev.Type == event.TypeWebhookQueued && (ev.TaskID != "" || ev.Owner != "" || ev.Data != nil || ev.Seq == 0 || ev.Time == 0) {
			t.Errorf("webhook_queued = %+v, want a logged, timed event without task, owner or data", ev)
		}
	}
	diff(t, "events delivered", []string{
		event.TypeTaskStatus, event.TypeTaskQueued, event.TypeWebhookQueued,
		event.TypeTaskStatus, event.TypeWebhookQueued,
		event.TypeTaskStatus, event.TypeTaskCompleted, event.TypeWebhookQueued,
	}, got)
	// Due at once: the deliverers find them.
	next, ok, err := s.WebhookNextDue(t.Context())
	must(t, "WebhookNextDue", err)
	if !ok || !next.Equal(at(0)) {
		t.Errorf("next due = %v, %v; want %v", next, ok, at(0))
	}
}

// testWebhookRequeueCancel: a requeue and a cancel that log their events
// queue their deliveries in the same step (task.pending of the next
// attempt, task.cancelled); a running task's cancel request has none.
func testWebhookRequeueCancel(t *testing.T, s store.Store) {
	all := sub(t, s, "alice", "")
	a := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claimID(t, s, a.ID, "127.0.0.1:8001", at(1))
	_, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: a.ID, LeaseOwner: replicaA, Progress: 30, Now: at(2), LogEvents: true})
	must(t, "TaskRequeue", err)
	wantDeliveryIDs(t, s, a.ID, all.ID+".evt_"+a.ID+"_pending.1")
	diff(t, "the requeue's events", []string{event.TypeTaskStatus, event.TypeTaskQueued, event.TypeWebhookQueued}, loggedTypes(t, s, 0))

	b := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(3)})
	_, err = s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: b.ID, Now: at(4), LogEvents: true})
	must(t, "TaskRequestCancel of a pending task", err)
	wantDeliveryIDs(t, s, b.ID, all.ID+".evt_"+b.ID+"_cancelled")
	diff(t, "the cancel's events", []string{event.TypeTaskStatus, event.TypeTaskCancelled, event.TypeWebhookQueued}, loggedTypes(t, s, 3))

	claimID(t, s, a.ID, "127.0.0.1:8001", at(5))
	_, err = s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: a.ID, Now: at(6), LogEvents: true})
	must(t, "TaskRequestCancel of a running task", err)
	diff(t, "the cancel request's events", []string{event.TypeTaskCancelRequested}, loggedTypes(t, s, 6))
	wantDeliveryIDs(t, s, a.ID, all.ID+".evt_"+a.ID+"_pending.1")
	checkPayloads(t, s, a.ID)
	checkPayloads(t, s, b.ID)
}

// testWebhookClaim: a claim that logs its task_status running (and the
// instance's instance_status) queues its task.running delivery in its
// step, alone or in an insert's; a claim that finds nothing queues
// nothing.
func testWebhookClaim(t *testing.T, s store.Store) {
	all := sub(t, s, "alice", "")
	a := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "127.0.0.1:8001", LeaseOwner: replicaA,
		LeaseTTL: leaseTTL, Now: at(1), LogRunning: true, Instance: &instance.State{ID: "127.0.0.1:8001", Alive: true, Enabled: true}})
	must(t, "TaskClaim", err)
	wantDeliveryIDs(t, s, a.ID, all.ID+".evt_"+a.ID+"_running.1")
	diff(t, "the claim's events", []string{event.TypeInstanceStatus, event.TypeTaskStatus, event.TypeWebhookQueued}, loggedTypes(t, s, 0))
	checkPayloads(t, s, a.ID)

	id := newID()
	last, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	_, claimed, err := s.TaskInsertClaim(t.Context(), &store.TaskInsertParams{ID: id, Owner: "alice", Workflow: []byte(`{}`),
		Now: at(2), Events: pendingEvents(t, id, "alice", at(2))},
		&store.TaskClaimParams{InstanceID: "127.0.0.1:8002", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(2), LogRunning: true})
	must(t, "TaskInsertClaim", err)
	if claimed == nil || claimed.ID != id {
		t.Fatalf("claimed %v, want the new task", claimed)
	}
	wantDeliveryIDs(t, s, id, all.ID+".evt_"+id+"_pending.0", all.ID+".evt_"+id+"_running.1")
	diff(t, "the insert's and the claim's events", []string{event.TypeTaskStatus, event.TypeTaskQueued, event.TypeWebhookQueued,
		event.TypeTaskStatus, event.TypeWebhookQueued}, loggedTypes(t, s, last))
	checkPayloads(t, s, id)

	last, err = s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	_, err = s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "127.0.0.1:8003", LeaseOwner: replicaA,
		LeaseTTL: leaseTTL, Now: at(3), LogRunning: true, Instance: &instance.State{ID: "127.0.0.1:8003"}})
	wantErr(t, "TaskClaim on an empty queue", err, store.ErrNotFound)
	if types := loggedTypes(t, s, last); len(types) != 0 {
		t.Errorf("a claim that found nothing logged %v", types)
	}
}

// testWebhookRefusedQueuesNothing: a step that is refused (a finish of a
// task not running, a finish whose lease was lost, a requeue of a pending
// task, an insert past the owner's bound) queues no delivery and logs no
// event.
func testWebhookRefusedQueuesNothing(t *testing.T, s store.Store) {
	sub(t, s, "alice", "")
	run := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claimID(t, s, run.ID, "127.0.0.1:8001", at(1))
	pend := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(2)})

	_, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{ID: pend.ID, From: []task.Status{task.StatusRunning},
		To: task.StatusCompleted, Now: at(3)})
	wantErr(t, "TaskFinish of a pending task from running", err, store.ErrConflict)
	_, err = s.TaskFinish(t.Context(), &store.TaskFinishParams{ID: run.ID, From: []task.Status{task.StatusRunning},
		To: task.StatusFailed, LeaseOwner: replicaB, Error: &task.Error{Type: "x", Message: "lost"}, Now: at(3)})
	wantErr(t, "TaskFinish with a lease lost", err, store.ErrConflict)
	_, err = s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: pend.ID, Now: at(3), LogEvents: true})
	wantErr(t, "TaskRequeue of a pending task", err, store.ErrConflict)
	id := newID()
	_, err = s.TaskInsert(t.Context(), &store.TaskInsertParams{ID: id, Owner: "alice", MaxPending: 1,
		Workflow: []byte(`{}`), Now: at(3), Events: pendingEvents(t, id, "alice", at(3))})
	wantErr(t, "TaskInsert past the owner's bound", err, store.ErrLimit)

	for _, taskID := range []string{run.ID, pend.ID, id} {
		wantDeliveryIDs(t, s, taskID)
	}
	if _, ok, err := s.WebhookNextDue(t.Context()); err != nil || ok {
		t.Errorf("WebhookNextDue = %v, %v; want nothing queued", ok, err)
	}
	if last, err := s.LastEventSeq(t.Context()); err != nil || last != 0 {
		t.Errorf("refused steps logged %d events (%v)", last, err)
	}
}

// testWebhookNoSubscription: a task whose owner subscribed to nothing
// (another owner and another task did) gets no delivery through its
// whole life, and no webhook_queued is logged.
func testWebhookNoSubscription(t *testing.T, s store.Store) {
	sub(t, s, "bob", "")
	sub(t, s, "alice", newID())
	id := newID()
	insert(t, s, store.TaskInsertParams{ID: id, Owner: "alice", Now: at(0), Events: pendingEvents(t, id, "alice", at(0))})
	tk := claimID(t, s, id, "127.0.0.1:8001", at(1))
	running, err := event.New(event.TypeTaskStatus, tk, event.StatusOf(tk))
	must(t, "event.New", err)
	publish(t, s, running)
	_, err = s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: id, LeaseOwner: replicaA, Now: at(2), LogEvents: true})
	must(t, "TaskRequeue", err)
	claimID(t, s, id, "127.0.0.1:8001", at(3))
	_, err = s.TaskFinish(t.Context(), &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusRunning},
		To: task.StatusFailed, LeaseOwner: replicaA, Error: &task.Error{Type: "x", Message: "boom"}, Now: at(4)})
	must(t, "TaskFinish", err)
	wantDeliveryIDs(t, s, id)
	if _, ok, err := s.WebhookNextDue(t.Context()); err != nil || ok {
		t.Errorf("WebhookNextDue = %v, %v; want nothing queued", ok, err)
	}
	types := loggedTypes(t, s, 0)
	if len(types) != 7 || slices.Contains(types, event.TypeWebhookQueued) {
		t.Errorf("logged %v, want the task's 7 events and no webhook_queued", types)
	}
}
