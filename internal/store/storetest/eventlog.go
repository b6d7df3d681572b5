package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/task"
	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func eventLogCases() []testCase {
	return []testCase{
		{"Numbered", testEventLogNumbered},
		{"PublishSeveral", testEventLogPublishSeveral},
		{"ReadAfter", testEventLogReadAfter},
		{"TransientNotLogged", testEventLogTransient},
		{"Empty", testEventLogEmpty},
		{"FinishLogsFinalEvents", testEventLogFinish},
		{"FinishConflictLogsNothing", testEventLogFinishConflict},
		{"InsertLogsEvents", testEventLogInsert},
		{"RequeueLogsEvents", testEventLogRequeue},
		{"CancelLogsEvents", testEventLogCancel},
	}
}

// loggedEvent builds the n-th logged test event with every field set.
func loggedEvent(n int) event.Event {
	return event.Event{
		Type:   event.TypeTaskStatus,
		Data:   []byte(fmt.Sprintf(`{"taskId":"t-%d","status":"running","instanceId":"i","progress":0,"attempts":1}`, n)),
		TaskID: fmt.Sprintf("t-%d", n),
		Owner:  "alice",
		Time:   at(n).UnixMilli(),
	}
}

// numbered is ev as the log keeps it: numbered seq.
func numbered(ev event.Event, seq int64) event.Event {
	ev.Seq = seq
	return ev
}

func testEventLogNumbered(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	for i := 1; i <= 5; i++ {
		publish(t, s, loggedEvent(i))
	}
	for i := 1; i <= 5; i++ {
		diff(t, fmt.Sprintf("event %d delivered", i), numbered(loggedEvent(i), int64(i)), recv(t, sub))
	}
	last, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	if last != 5 {
		t.Errorf("LastEventSeq = %d, want 5", last)
	}
}

// testEventLogPublishSeveral: events published in one call go out in
// their order, the logged ones numbered one after the other.
func testEventLogPublishSeveral(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	publish(t, s, loggedEvent(1))
	must(t, "Publish several", s.Publish(t.Context(), loggedEvent(2), testEvent(3), loggedEvent(4)))
	must(t, "Publish none", s.Publish(t.Context()))
	diff(t, "event 1", numbered(loggedEvent(1), 1), recv(t, sub))
	var logged []event.Event
	for range 3 {
		if ev := recv(t, sub); ev.Seq != 0 {
			logged = append(logged, ev)
		} else {
			diff(t, "the transient event", testEvent(3), ev)
		}
	}
	diff(t, "the logged events of one call", []event.Event{numbered(loggedEvent(2), 2), numbered(loggedEvent(4), 3)}, logged)
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 1})
	must(t, "EventsAfter 1", err)
	diff(t, "the log", []event.Event{numbered(loggedEvent(2), 2), numbered(loggedEvent(4), 3)}, got)
}

func testEventLogReadAfter(t *testing.T, s store.Store) {
	for i := 1; i <= 7; i++ {
		publish(t, s, loggedEvent(i))
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 2, Limit: 3})
	must(t, "EventsAfter 2", err)
	diff(t, "events after 2, 3 of them", []event.Event{
		numbered(loggedEvent(3), 3), numbered(loggedEvent(4), 4), numbered(loggedEvent(5), 5),
	}, got)
	got, err = s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 5})
	must(t, "EventsAfter 5", err)
	diff(t, "events after 5", []event.Event{numbered(loggedEvent(6), 6), numbered(loggedEvent(7), 7)}, got)
	got, err = s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 7})
	must(t, "EventsAfter 7", err)
	if len(got) != 0 {
		t.Errorf("events after the last = %+v, want none", got)
	}
	got, err = s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 0})
	must(t, "EventsAfter 0", err)
	if len(got) != 7 {
		t.Errorf("events after 0: got %d, want all 7", len(got))
	}
}

func testEventLogTransient(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	publish(t, s, loggedEvent(1), testEvent(2), loggedEvent(3))
	diff(t, "logged 1", numbered(loggedEvent(1), 1), recv(t, sub))
	diff(t, "transient 2, not numbered", testEvent(2), recv(t, sub))
	diff(t, "logged 3, numbered next", numbered(loggedEvent(3), 2), recv(t, sub))
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{})
	must(t, "EventsAfter", err)
	diff(t, "the log", []event.Event{numbered(loggedEvent(1), 1), numbered(loggedEvent(3), 2)}, got)
}

func testEventLogEmpty(t *testing.T, s store.Store) {
	last, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	if last != 0 {
		t.Errorf("LastEventSeq of an empty log = %d, want 0", last)
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{})
	if err != nil || len(got) != 0 {
		t.Errorf("EventsAfter on an empty log = %+v, %v; want none, no error", got, err)
	}
	// A position past the end (a client of another store) is not an error.
	if _, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 42}); errors.Is(err, store.ErrEventsGone) || err != nil {
		t.Errorf("EventsAfter past the end: %v, want no error", err)
	}
}

// testEventLogFinish: TaskFinish logs and delivers the task's final events
// (event.Final) itself, in the same step: completed, failed, and cancelled
// from pending.
func testEventLogFinish(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	done := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claimID(t, s, done.ID, "127.0.0.1:8001", at(1))
	bad := insert(t, s, store.TaskInsertParams{Owner: "bob", Now: at(0)})
	claimID(t, s, bad.ID, "127.0.0.1:8002", at(1))
	gone := insert(t, s, store.TaskInsertParams{Owner: "carol", Now: at(0)})

	var finished []*task.Task
	for _, p := range []*store.TaskFinishParams{
		{ID: done.ID, From: []task.Status{task.StatusRunning}, To: task.StatusCompleted, LeaseOwner: replicaA, Now: at(5),
			Result: &task.Result{Files: []string{"http://gw/files/f1/a.png"}, Outputs: map[string][]task.Output{
				"9": {{URL: "http://gw/files/f1/a.png", Filename: "a.png", Type: "output", Kind: "images", NodeID: "9", FileID: "f1"}}}}},
		{ID: bad.ID, From: []task.Status{task.StatusRunning}, To: task.StatusFailed, LeaseOwner: replicaA, Now: at(6), Progress: 40,
			Error: &task.Error{Type: "execution_error", Message: "boom \"quoted\" </script>", NodeID: "3"}},
		{ID: gone.ID, From: []task.Status{task.StatusPending}, To: task.StatusCancelled, Now: at(7)},
	} {
		tk, err := s.TaskFinish(t.Context(), p)
		must(t, "TaskFinish", err)
		finished = append(finished, tk)
	}
	var want []event.Event
	for _, tk := range finished {
		evs, err := event.Final(tk)
		must(t, "event.Final", err)
		want = append(want, evs...)
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{})
	must(t, "EventsAfter", err)
	if len(got) != len(want) {
		t.Fatalf("logged %d events, want %d (task_status and the final event of each task)", len(got), len(want))
	}
	for i := range want {
		live := recv(t, sub)
		for what, ev := range map[string]event.Event{"logged": got[i], "delivered": live} {
			if ev.Seq != int64(i+1) || ev.Type != want[i].Type || ev.TaskID != want[i].TaskID || ev.Owner != want[i].Owner || ev.Time == 0 {
				t.Errorf("%s event %d = %s of %s by %q numbered %d, want %s of %s by %q numbered %d", what, i,
					ev.Type, ev.TaskID, ev.Owner, ev.Seq, want[i].Type, want[i].TaskID, want[i].Owner, i+1)
			}
			var gotData, wantData any
			must(t, "decode data", json.Unmarshal(ev.Data, &gotData))
			must(t, "decode data", json.Unmarshal(want[i].Data, &wantData))
			if d := cmp.Diff(wantData, gotData); d != "" {
				t.Errorf("%s %s data differs from event.Final's (-want +got):\n%s", what, ev.Type, d)
			}
		}
	}
}

// testEventLogFinishConflict: a finish that changes nothing logs nothing.
func testEventLogFinishConflict(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	_, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{
		ID: tk.ID, From: []task.Status{task.StatusRunning}, To: task.StatusCompleted, Now: at(1),
	})
	wantErr(t, "TaskFinish of a pending task from running", err, store.ErrConflict)
	last, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	if last != 0 {
		t.Errorf("a refused finish logged %d events", last)
	}
}

// testEventLogInsert: the events given to TaskInsert are logged and
// published in its step, numbered; an insert refused logs none.
func testEventLogInsert(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	id := newID()
	evs := []event.Event{loggedEvent(1), loggedEvent(2)}
	for i := range evs {
		evs[i].TaskID = id
	}
	tk := insert(t, s, store.TaskInsertParams{ID: id, Owner: "alice", MaxPending: 1, Now: at(0), Events: evs})
	for i, ev := range evs {
		diff(t, fmt.Sprintf("event %d of the insert", i+1), numbered(ev, int64(i+1)), recv(t, sub))
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 0})
	must(t, "EventsAfter 0", err)
	diff(t, "the log after the insert", []event.Event{numbered(evs[0], 1), numbered(evs[1], 2)}, got)
	if evs[0].Seq != 0 {
		t.Errorf("the caller's event was numbered: seq %d", evs[0].Seq)
	}
	// alice has one pending task: another is refused, and logs nothing.
	_, err = s.TaskInsert(t.Context(), &store.TaskInsertParams{ID: newID(), Owner: "alice", MaxPending: 1,
		Workflow: tk.Workflow, Now: at(1), Events: []event.Event{loggedEvent(3)}})
	wantErr(t, "TaskInsert past the owner's bound", err, store.ErrLimit)
	last, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	if last != 2 {
		t.Errorf("after a refused insert, the last event is %d, want 2", last)
	}
}

// testEventLogRequeue: a requeue with LogEvents logs the task's
// task_status (pending, with its attempts and progress) and task_queued
// in its step; one without logs nothing, nor does a refused one.
func testEventLogRequeue(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claimID(t, s, tk.ID, "127.0.0.1:8001", at(1))
	_, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: tk.ID, Progress: 40, Now: at(2)})
	must(t, "TaskRequeue without events", err)
	if last, err := s.LastEventSeq(t.Context()); err != nil || last != 0 {
		t.Fatalf("a requeue without LogEvents logged %d events (%v)", last, err)
	}
	claimID(t, s, tk.ID, "127.0.0.1:8001", at(3))
	sub := subscribe(t, s, t.Context())
	back, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: tk.ID, RefundAttempt: true, Progress: 50, Now: at(4), LogEvents: true})
	must(t, "TaskRequeue with events", err)
	got := []event.Event{recv(t, sub), recv(t, sub)}
	types := []string{got[0].Type, got[1].Type}
	diff(t, "the requeue's events", []string{event.TypeTaskStatus, event.TypeTaskQueued}, types)
	for i, ev := range got {
		if ev.Seq != int64(i+1) || ev.TaskID != tk.ID || ev.Owner != "alice" || ev.Time != at(4).UnixMilli() {
			t.Errorf("event %d: seq %d, task %q, owner %q, time %d; want %d, %s, alice, %d", i, ev.Seq, ev.TaskID, ev.Owner, ev.Time, i+1, tk.ID, at(4).UnixMilli())
		}
	}
	var status event.TaskStatusData
	must(t, "decode task_status", json.Unmarshal(got[0].Data, &status))
	diff(t, "task_status of the requeue", event.TaskStatusData{TaskID: tk.ID, Status: task.StatusPending, Progress: back.Progress, Attempts: back.Attempts}, status)
	var queued event.TaskStatusData
	must(t, "decode task_queued", json.Unmarshal(got[1].Data, &queued))
	if queued.TaskID != tk.ID || queued.Status != task.StatusPending {
		t.Errorf("task_queued data %s", got[1].Data)
	}
	_, err = s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: tk.ID, Now: at(5), LogEvents: true})
	wantErr(t, "TaskRequeue of a pending task", err, store.ErrConflict)
	if last, err := s.LastEventSeq(t.Context()); err != nil || last != 2 {
		t.Errorf("after a refused requeue the last event is %d (%v), want 2", last, err)
	}
}

// testEventLogCancel: a cancel with LogEvents logs a pending task's final
// events, or a running task's task_cancel_requested, in its step; one
// without logs nothing.
func testEventLogCancel(t *testing.T, s store.Store) {
	run := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claimID(t, s, run.ID, "127.0.0.1:8001", at(1))
	quiet := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(2)})
	pend := insert(t, s, store.TaskInsertParams{Owner: "bob", Now: at(3)})
	_, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: quiet.ID, Now: at(4)})
	must(t, "TaskRequestCancel without events", err)
	if last, err := s.LastEventSeq(t.Context()); err != nil || last != 0 {
		t.Fatalf("a cancel without LogEvents logged %d events (%v)", last, err)
	}
	sub := subscribe(t, s, t.Context())
	_, err = s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: pend.ID, Now: at(5), LogEvents: true})
	must(t, "TaskRequestCancel of a pending task", err)
	_, err = s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: run.ID, Now: at(6), LogEvents: true})
	must(t, "TaskRequestCancel of a running task", err)
	var got []string
	for range 3 {
		ev := recv(t, sub)
		got = append(got, ev.Type+" "+ev.TaskID+" "+ev.Owner)
	}
	diff(t, "the cancels' events", []string{
		event.TypeTaskStatus + " " + pend.ID + " bob",
		event.TypeTaskCancelled + " " + pend.ID + " bob",
		event.TypeTaskCancelRequested + " " + run.ID + " alice",
	}, got)
	evs, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 0})
	must(t, "EventsAfter 0", err)
	if len(evs) != 3 {
		t.Fatalf("the log holds %d events, want 3", len(evs))
	}
	var status event.TaskStatusData
	must(t, "decode task_status", json.Unmarshal(evs[0].Data, &status))
	if status.Status != task.StatusCancelled || status.TaskID != pend.ID {
		t.Errorf("task_status of the cancel: %s", evs[0].Data)
	}
	var req event.TaskCancelledData
	must(t, "decode task_cancel_requested", json.Unmarshal(evs[2].Data, &req))
	diff(t, "task_cancel_requested data", event.TaskCancelledData{TaskID: run.ID, InstanceID: "127.0.0.1:8001"}, req)
}
