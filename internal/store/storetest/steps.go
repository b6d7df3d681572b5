package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func stepCases() []testCase {
	return []testCase{
		{"ClaimsTheNewTask", testInsertClaimNew},
		{"ClaimsTheHeadFirst", testInsertClaimHead},
		{"NothingRunnable", testInsertClaimNothingRunnable},
		{"RefusedInsertClaimsNothing", testInsertClaimRefused},
		{"ClaimLogsEvents", testClaimLogsEvents},
		{"InsertClaimLogsEvents", testInsertClaimLogsEvents},
		{"ClaimLogsItsEvents", testClaimLogsItsEvents},
		{"InsertClaimLogsItsEvents", testInsertClaimLogsItsEvents},
		{"FinishLogsAlso", testFinishLogsAlso},
	}
}

// insertClaim inserts a task (ID, Workflow and Now filled as insert does)
// and claims for instanceID under replicaA's lease.
func insertClaim(t *testing.T, s store.Store, p store.TaskInsertParams, instanceID string) (*task.Task, *task.Task, error) {
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
	return s.TaskInsertClaim(t.Context(), &p, &store.TaskClaimParams{
		InstanceID: instanceID, LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: p.Now,
	})
}

// testInsertClaimNew: on an empty queue the new task is claimed in the
// insert's step, running there under the lease, and the insert's events
// are logged.
func testInsertClaimNew(t *testing.T, s store.Store) {
	id := newID()
	evs, err := event.Pending(&task.Task{ID: id, Owner: "alice", Status: task.StatusPending})
	must(t, "event.Pending", err)
	before, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	ins, claimed, err := insertClaim(t, s, store.TaskInsertParams{ID: id, Owner: "alice", Now: at(1), Events: evs}, "127.0.0.1:8001")
	must(t, "TaskInsertClaim", err)
	if ins.ID != id || ins.Status != task.StatusPending {
		t.Fatalf("inserted = %s %s, want %s pending", ins.ID, ins.Status, id)
	}
	if claimed == nil || claimed.ID != id {
		t.Fatalf("claimed = %v, want the new task", claimed)
	}
	got := get(t, s, id)
	if got.Status != task.StatusRunning || got.InstanceID != "127.0.0.1:8001" || got.Attempts != 1 || got.LeaseOwner != replicaA {
		t.Fatalf("stored task = %s on %q, attempts %d, lease %q; want running on 127.0.0.1:8001, 1, %q",
			got.Status, got.InstanceID, got.Attempts, got.LeaseOwner, replicaA)
	}
	if len(claimed.Workflow) == 0 {
		t.Error("the claimed task comes without its workflow")
	}
	after, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	if n := after - before; n != int64(len(evs)) {
		t.Errorf("events logged = %d, want %d", n, len(evs))
	}
	_, err = s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "127.0.0.1:8002", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(2)})
	wantErr(t, "a claim after it (nothing left pending)", err, store.ErrNotFound)
}

// testInsertClaimHead: the claim is the store's: a task ahead in line goes
// first, and the new one stays pending.
func testInsertClaimHead(t *testing.T, s store.Store) {
	old := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(1)})
	ins, claimed, err := insertClaim(t, s, store.TaskInsertParams{Owner: "alice", Now: at(2)}, "127.0.0.1:8001")
	must(t, "TaskInsertClaim", err)
	if claimed == nil || claimed.ID != old.ID {
		t.Fatalf("claimed = %v, want the older task %s", claimed, old.ID)
	}
	if got := get(t, s, ins.ID); got.Status != task.StatusPending {
		t.Fatalf("new task is %s, want pending", got.Status)
	}
}

// testInsertClaimNothingRunnable: a task the instance cannot run is
// inserted and left pending, with no claim and no error.
func testInsertClaimNothingRunnable(t *testing.T, s store.Store) {
	p := store.TaskInsertParams{Owner: "alice", Now: at(1),
		Cap: &store.CapParams{Key: "kx", Data: []byte(`{"k":"x"}`), Instances: []string{"127.0.0.1:8009"}}}
	ins, claimed, err := insertClaim(t, s, p, "127.0.0.1:8001")
	must(t, "TaskInsertClaim", err)
	if claimed != nil {
		t.Fatalf("claimed %s on an instance that cannot run it", claimed.ID)
	}
	if got := get(t, s, ins.ID); got.Status != task.StatusPending {
		t.Fatalf("new task is %s, want pending", got.Status)
	}
	claimID(t, s, ins.ID, "127.0.0.1:8009", at(2))
}

// testInsertClaimRefused: an insert refused by the owner's pending limit
// claims nothing, not even the task ahead.
func testInsertClaimRefused(t *testing.T, s store.Store) {
	old := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(1)})
	ins, claimed, err := insertClaim(t, s, store.TaskInsertParams{Owner: "alice", Now: at(2), MaxPending: 1}, "127.0.0.1:8001")
	wantErr(t, "TaskInsertClaim over the limit", err, store.ErrLimit)
	if ins != nil || claimed != nil {
		t.Fatalf("refused insert returned %v, %v", ins, claimed)
	}
	if got := get(t, s, old.ID); got.Status != task.StatusPending {
		t.Fatalf("the task ahead is %s after a refused insert, want pending", got.Status)
	}
}

// runningEvent builds a claimed task's task_status running, counting calls.
func runningEvent(calls *int) func(*task.Task) ([]event.Event, error) {
	return func(t *task.Task) ([]event.Event, error) {
		*calls++
		ev, err := event.New(event.TypeTaskStatus, t, event.StatusOf(t))
		return []event.Event{ev}, err
	}
}

// loggedTypes reads the events logged after seq, as "type:status".
func loggedAfter(t *testing.T, s store.Store, seq int64) []event.Event {
	t.Helper()
	evs, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: seq})
	must(t, "EventsAfter", err)
	return evs
}

// testClaimLogsEvents: a claim logs the events p.Events builds from the
// claimed task, numbered and delivered; with nothing to claim it is not
// called and nothing is logged.
func testClaimLogsEvents(t *testing.T, s store.Store) {
	calls := 0
	p := &store.TaskClaimParams{InstanceID: "127.0.0.1:8001", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(2), Events: runningEvent(&calls)}
	before, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	_, err = s.TaskClaim(t.Context(), p)
	wantErr(t, "claim of an empty queue", err, store.ErrNotFound)
	if calls != 0 || len(loggedAfter(t, s, before)) != 0 {
		t.Fatalf("a claim of nothing built events %d times and logged %v", calls, loggedAfter(t, s, before))
	}
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(1)})
	sub := subscribe(t, s, t.Context())
	claimed, err := s.TaskClaim(t.Context(), p)
	must(t, "TaskClaim", err)
	if claimed.ID != tk.ID || calls != 1 {
		t.Fatalf("claimed %s with %d calls, want %s and 1", claimed.ID, calls, tk.ID)
	}
	logged := loggedAfter(t, s, before)
	if len(logged) != 1 || logged[0].Type != event.TypeTaskStatus || logged[0].TaskID != tk.ID || logged[0].Seq == 0 {
		t.Fatalf("logged %+v, want the task's task_status", logged)
	}
	var data struct {
		Status     string `json:"status"`
		InstanceID string `json:"instanceId"`
	}
	must(t, "decode", json.Unmarshal(logged[0].Data, &data))
	if data.Status != "running" || data.InstanceID != "127.0.0.1:8001" {
		t.Errorf("logged status %q on %q, want running on 127.0.0.1:8001", data.Status, data.InstanceID)
	}
	diff(t, "event delivered", logged[0], recv(t, sub))
}

// testInsertClaimLogsEvents: an insert with a claim logs the insert's
// events, then the claim's, in one step.
func testInsertClaimLogsEvents(t *testing.T, s store.Store) {
	id := newID()
	evs, err := event.Pending(&task.Task{ID: id, Owner: "alice", Status: task.StatusPending})
	must(t, "event.Pending", err)
	before, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	calls := 0
	_, claimed, err := s.TaskInsertClaim(t.Context(),
		&store.TaskInsertParams{ID: id, Owner: "alice", Workflow: []byte(`{}`), Now: at(1), Events: evs},
		&store.TaskClaimParams{InstanceID: "127.0.0.1:8001", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(1), Events: runningEvent(&calls)})
	must(t, "TaskInsertClaim", err)
	if claimed == nil || claimed.ID != id || calls != 1 {
		t.Fatalf("claimed %v with %d calls", claimed, calls)
	}
	var got []string
	for _, ev := range loggedAfter(t, s, before) {
		got = append(got, ev.Type)
	}
	want := []string{evs[0].Type, evs[1].Type, event.TypeTaskStatus}
	diff(t, "logged events", want, got)
}

// claimInstance is an instance's state with every field of its
// instance_status set, strings that JSON escapes included.
var claimInstance = instance.State{ID: "127.0.0.1:8001", Alive: true, Enabled: true,
	LastError: "dial \"127.0.0.1:8001\": <refused> & gone é\u2028\n", DrainReason: "failures/5", AutoDrained: true}

// claimedEvents are the events of a claim of tk for st (nil: none), as
// the dispatcher built them before the stores did: st's instance_status
// busy with tk (event.Instance), then tk's task_status (event.New of
// event.StatusOf), stamped now.
func claimedEvents(t *testing.T, tk *task.Task, st *instance.State, now time.Time) []event.Event {
	t.Helper()
	var evs []event.Event
	if st != nil {
		busy := *st
		busy.Busy, busy.CurrentTaskID = true, tk.ID
		evs = append(evs, event.Instance(busy, tk.Owner))
	}
	ev, err := event.New(event.TypeTaskStatus, tk, event.StatusOf(tk))
	must(t, "event.New", err)
	evs = append(evs, ev)
	for i := range evs {
		evs[i].Time = now.UnixMilli()
	}
	return evs
}

// wantLogged checks that the events logged after seq are want, byte for
// byte, numbered one after the other, and that sub delivers them so.
func wantLogged(t *testing.T, s store.Store, sub store.Subscription, seq int64, want []event.Event) {
	t.Helper()
	var numbered []event.Event
	for i, ev := range want {
		ev.Seq = seq + int64(i) + 1
		numbered = append(numbered, ev)
	}
	diff(t, "events logged", numbered, loggedAfter(t, s, seq))
	for i, ev := range numbered {
		got := recv(t, sub)
		diff(t, "event delivered", ev, got)
		if string(got.Data) != string(want[i].Data) {
			t.Fatalf("event %d data = %s, want %s", i, got.Data, want[i].Data)
		}
	}
}

// testClaimLogsItsEvents: a claim with LogRunning and Instance logs, in its
// own step, the instance's instance_status busy with the claimed task, then
// the task's task_status running, byte for byte as event.Instance and
// event.New build them from the task as stored (store.ClaimEvents builds
// the same), stamped p.Now; then p.Events' events. The caller's instance
// state is left as it was. A claim of nothing logs nothing.
func testClaimLogsItsEvents(t *testing.T, s store.Store) {
	st := claimInstance
	calls := 0
	p := &store.TaskClaimParams{InstanceID: st.ID, LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(2),
		LogRunning: true, Instance: &st, Events: func(*task.Task) ([]event.Event, error) {
			calls++
			return []event.Event{loggedEvent(7)}, nil
		}}
	before, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	_, err = s.TaskClaim(t.Context(), p)
	wantErr(t, "claim of an empty queue", err, store.ErrNotFound)
	if logged := loggedAfter(t, s, before); calls != 0 || len(logged) != 0 {
		t.Fatalf("a claim of nothing built events %d times and logged %v", calls, logged)
	}
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(1)})
	sub := subscribe(t, s, t.Context())
	claimed, err := s.TaskClaim(t.Context(), p)
	must(t, "TaskClaim", err)
	stored := get(t, s, tk.ID)
	if claimed.ID != tk.ID || stored.Status != task.StatusRunning || stored.InstanceID != st.ID || stored.Attempts != 1 || calls != 1 {
		t.Fatalf("claimed %s, stored %s on %q after %d attempts, %d calls; want %s running on %s, 1 attempt, 1 call",
			claimed.ID, stored.Status, stored.InstanceID, stored.Attempts, calls, tk.ID, st.ID)
	}
	want := claimedEvents(t, stored, &st, at(2))
	built, err := store.ClaimEvents(p, claimed)
	must(t, "store.ClaimEvents", err)
	diff(t, "store.ClaimEvents", want, built)
	wantLogged(t, s, sub, before, append(want, loggedEvent(7)))
	diff(t, "the caller's instance state", claimInstance, st)
}

// testInsertClaimLogsItsEvents: an insert that claims the new task with
// LogRunning and Instance logs the insert's events, then the claim's,
// byte for byte as in testClaimLogsItsEvents, all in its step; with
// LogRunning alone, the task_status only.
func testInsertClaimLogsItsEvents(t *testing.T, s store.Store) {
	for _, withInstance := range []bool{true, false} {
		var st *instance.State
		if withInstance {
			st = &instance.State{ID: "127.0.0.1:8002", Alive: true, Enabled: true}
		}
		id := newID()
		evs := pendingEvents(t, id, "bob", at(3))
		before, err := s.LastEventSeq(t.Context())
		must(t, "LastEventSeq", err)
		sub := subscribe(t, s, t.Context())
		_, claimed, err := s.TaskInsertClaim(t.Context(),
			&store.TaskInsertParams{ID: id, Owner: "bob", Workflow: []byte(`{}`), Now: at(3), Events: evs},
			&store.TaskClaimParams{InstanceID: "127.0.0.1:8002", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(4),
				LogRunning: true, Instance: st})
		must(t, "TaskInsertClaim", err)
		if claimed == nil || claimed.ID != id {
			t.Fatalf("claimed %v, want the new task", claimed)
		}
		wantLogged(t, s, sub, before, append(evs, claimedEvents(t, get(t, s, id), st, at(4))...))
		must(t, "close", sub.Close())
	}
}

// testFinishLogsAlso: a finish logs the events Also builds after its final
// ones; a refused finish does not call it.
func testFinishLogsAlso(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	claimID(t, s, tk.ID, "127.0.0.1:8001", at(1))
	calls := 0
	also := func() []event.Event {
		calls++
		return []event.Event{loggedEvent(99)}
	}
	_, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{ID: tk.ID, From: []task.Status{task.StatusRunning},
		To: task.StatusCompleted, LeaseOwner: replicaB, Now: at(2), Also: also})
	wantErr(t, "TaskFinish under another lease", err, store.ErrConflict)
	if calls != 0 {
		t.Fatalf("a refused finish built its Also events %d times", calls)
	}
	before, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	done, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{ID: tk.ID, From: []task.Status{task.StatusRunning},
		To: task.StatusCompleted, LeaseOwner: replicaA, Now: at(3), Also: also})
	must(t, "TaskFinish", err)
	final, err := event.Final(done)
	must(t, "event.Final", err)
	var got, want []string
	for _, ev := range loggedAfter(t, s, before) {
		got = append(got, ev.Type+" "+ev.TaskID)
	}
	for _, ev := range append(final, loggedEvent(99)) {
		want = append(want, ev.Type+" "+ev.TaskID)
	}
	diff(t, "logged events", want, got)
	if calls != 1 {
		t.Errorf("Also called %d times, want 1", calls)
	}
}
