package redisstore

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func insertTask(t *testing.T, s *Store, p store.TaskInsertParams) *task.Task {
	t.Helper()
	if p.ID == "" {
		p.ID = uuid.NewString()
	}
	p.Workflow = []byte(`{}`)
	tk, err := s.TaskInsert(t.Context(), &p)
	mustOK(t, err)
	return tk
}

// TestListMergePaging pages through several statuses at once, with ties
// in CreatedAt, and compares with a sort of every task.
func TestListMergePaging(t *testing.T) {
	s := open(t)
	var all []*task.Task
	for i := range 40 {
		owner := []string{"alice", "bob"}[i%2]
		prio := map[bool]int{true: 10, false: 0}[i%5 == 0] // the ones claimed below
		all = append(all, insertTask(t, s, store.TaskInsertParams{Owner: owner, Priority: prio, Now: at(i * 7 % 11)}))
	}
	for range 8 {
		_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "i:1", LeaseOwner: "r", LeaseTTL: time.Minute, Now: at(50)})
		mustOK(t, err)
	}
	for i, tk := range all {
		switch i % 5 {
		case 1:
			_, err := s.TaskFinish(t.Context(), &store.TaskFinishParams{ID: tk.ID, From: []task.Status{task.StatusPending}, To: task.StatusFailed, Now: at(60)})
			mustOK(t, err)
		case 2:
			_, err := s.TaskRequestCancel(t.Context(), &store.TaskCancelParams{ID: tk.ID, Now: at(60)})
			mustOK(t, err)
		}
	}
	for i, tk := range all {
		all[i] = getTask(t, s, tk.ID)
	}
	filters := []store.TaskListParams{
		{Statuses: []task.Status{task.StatusPending, task.StatusFailed}},
		{Statuses: []task.Status{task.StatusRunning, task.StatusCancelled, task.StatusPending, task.StatusFailed}},
		{Statuses: []task.Status{task.StatusPending, task.StatusCancelled}, Owner: "alice"},
		{Statuses: slices.Clone(task.AllStatuses), Owner: "bob"},
	}
	for _, deep := range []int{defaultDeepOffset, 0} { // merge from the top, and binary search
		s.deepOffset = deep
		for _, f := range filters {
			for _, page := range [][2]int{{4, 0}, {4, 3}, {10, 7}, {10, 25}, {3, 37}, {5, 100}} {
				f.Limit, f.Offset = page[0], page[1]
				t.Run(fmt.Sprintf("deep=%d/%v/%s/limit=%d/offset=%d", deep, f.Statuses, f.Owner, f.Limit, f.Offset), func(t *testing.T) {
					checkPage(t, s, all, f)
				})
			}
		}
	}
}

// checkPage compares one TaskList page with the expected slice of all.
func checkPage(t *testing.T, s *Store, all []*task.Task, p store.TaskListParams) {
	t.Helper()
	var want []string
	sorted := slices.Clone(all)
	slices.SortFunc(sorted, func(a, b *task.Task) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.Seq, a.Seq))
	})
	for _, tk := range sorted {
		if slices.Contains(p.Statuses, tk.Status) && (p.Owner == "" || p.Owner == tk.Owner) {
			want = append(want, tk.ID)
		}
	}
	total := len(want)
	want = want[min(p.Offset, total):min(p.Offset+p.Limit, total)]
	res, err := s.TaskList(t.Context(), &p)
	mustOK(t, err)
	got := make([]string, len(res.Items))
	for i, tk := range res.Items {
		got[i] = tk.ID
	}
	if d := gocmp.Diff(want, got); d != "" || res.Total != total {
		t.Errorf("total %d, want %d; page (-want +got):\n%s", res.Total, total, d)
	}
}

func getTask(t *testing.T, s *Store, id string) *task.Task {
	t.Helper()
	tk, err := s.TaskGet(t.Context(), id)
	mustOK(t, err)
	return tk
}

// TestExtremeNumbers: every int64 priority orders exactly, and Seq values
// near 2^53 survive the scripts' number handling.
func TestExtremeNumbers(t *testing.T) {
	s := open(t)
	const seqStart = 1<<53 - 100
	mustOK(t, admin(t).Set(t.Context(), s.keys.seq(), seqStart, 0).Err())
	prios := []int{0, math.MinInt64, math.MaxInt64, -1, 1, math.MaxInt64}
	var ids []string
	for i, p := range prios {
		tk := insertTask(t, s, store.TaskInsertParams{Priority: p, Timeout: math.MaxInt64, Now: at(0)})
		if want := int64(seqStart + i + 1); tk.Seq != want || getTask(t, s, tk.ID).Seq != want {
			t.Fatalf("Seq = %d (read back %d), want %d", tk.Seq, getTask(t, s, tk.ID).Seq, want)
		}
		ids = append(ids, tk.ID)
	}
	want := []string{ids[2], ids[5], ids[4], ids[0], ids[3], ids[1]}
	list, err := s.TaskList(t.Context(), &store.TaskListParams{})
	mustOK(t, err)
	if got := list.Items[0].ID; got != ids[5] { // same CreatedAt: newest Seq first
		t.Errorf("first listed %s, want %s", got, ids[5])
	}
	for i, id := range want {
		tk, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "i:1", LeaseOwner: "r", LeaseTTL: time.Minute, Now: at(1)})
		mustOK(t, err)
		if tk.ID != id || tk.Timeout != math.MaxInt64 {
			t.Fatalf("claim %d: %s (priority %d, timeout %v), want %s", i, tk.ID, tk.Priority, tk.Timeout, id)
		}
	}
}

func TestRequeueRefundsAttempt(t *testing.T) {
	s := open(t)
	tk := insertTask(t, s, store.TaskInsertParams{Now: at(0)})
	for i, refund := range []bool{true, false} {
		_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "i:1", LeaseOwner: "r", LeaseTTL: time.Minute, Now: at(1)})
		mustOK(t, err)
		got, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: tk.ID, LeaseOwner: "r", RefundAttempt: refund, Now: at(2)})
		mustOK(t, err)
		if got.Attempts != i {
			t.Errorf("requeue (refund %v): attempts %d, want %d", refund, got.Attempts, i)
		}
	}
}

func TestLeaseKeyCollected(t *testing.T) {
	s := open(t)
	ok, err := s.LeaseAcquire(t.Context(), &store.LeaseParams{Name: "n", Holder: "a", TTL: 10 * time.Second, Now: at(0)})
	mustOK(t, err)
	ttl, err := admin(t).PTTL(t.Context(), s.keys.lease("n")).Result()
	mustOK(t, err)
	if !ok || ttl <= leaseKeyGrace || ttl > leaseKeyGrace+10*time.Second {
		t.Errorf("acquired %v, key TTL %v; want true and a TTL just over %v", ok, ttl, leaseKeyGrace)
	}
}

// TestPubSubOverflow: a subscriber that does not read loses what overflows
// its buffer, counted, and keeps the events that fit, in order.
func TestPubSubOverflow(t *testing.T) {
	s := open(t, WithSubscriberBuffer(4))
	sub, err := s.Subscribe(t.Context())
	mustOK(t, err)
	defer sub.Close()
	for i := range 10 {
		mustOK(t, s.Publish(t.Context(), event.Event{Type: "task_progress", Time: int64(i)}))
	}
	waitFor(t, "6 dropped events", func() bool { return sub.(*subscription).Dropped() == 6 })
	for i := range 4 {
		if ev := recvEvent(t, sub); ev.Time != int64(i) {
			t.Fatalf("event %d has Time %d, want %d", i, ev.Time, i)
		}
	}
	if got := s.DroppedEvents(); got != 6 {
		t.Errorf("DroppedEvents = %d, want 6", got)
	}
}

// recvEvent waits for the next event, failing if none comes in time.
func recvEvent(t *testing.T, sub store.Subscription) event.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.C():
		if !ok {
			t.Fatal("subscription closed, want an event")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within the deadline")
	}
	return event.Event{}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within the deadline", what)
		}
		<-tick.C
	}
}

// TestEventRoundTrip: Data arrives byte for byte, compact or not, and nil
// stays nil.
func TestEventRoundTrip(t *testing.T) {
	s := open(t)
	sub, err := s.Subscribe(t.Context())
	mustOK(t, err)
	defer sub.Close()
	events := []event.Event{
		{Type: "a", Data: []byte("{ \"x\" :\n 1 }"), TaskID: "t\n1", Owner: "ü", Time: -5},
		{Type: "b"},
		{Type: "c", Data: []byte{}},
		{Type: "d", Data: []byte(strings.Repeat(`"x"`, 10000))},
	}
	for _, ev := range events {
		mustOK(t, s.Publish(t.Context(), ev))
	}
	for i, want := range events {
		want.Seq = int64(i + 1) // logged types: numbered
		got := recvEvent(t, sub)
		if d := gocmp.Diff(want, got); d != "" || (want.Data == nil) != (got.Data == nil) {
			t.Errorf("event %d (-want +got):\n%s (nil data: want %v, got %v)", i, d, want.Data == nil, got.Data == nil)
		}
	}
}

// TestReplicasShare: two stores on one prefix (two replicas) share tasks
// and events; a store on another prefix sees neither.
func TestReplicasShare(t *testing.T) {
	a := open(t)
	b, err := Open(t.Context(), redistest.URL(t), WithPrefix(a.Prefix()))
	mustOK(t, err)
	defer b.Close()
	other := open(t)
	subB, err := b.Subscribe(t.Context())
	mustOK(t, err)
	defer subB.Close()
	subOther, err := other.Subscribe(t.Context())
	mustOK(t, err)
	defer subOther.Close()

	tk := insertTask(t, a, store.TaskInsertParams{Owner: "alice", Now: at(0)})
	mustOK(t, a.Publish(t.Context(), event.Event{Type: "task_queued", TaskID: tk.ID}))
	if ev := recvEvent(t, subB); ev.TaskID != tk.ID {
		t.Errorf("replica b got event for %q, want %q", ev.TaskID, tk.ID)
	}
	claimed, err := b.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "i:1", LeaseOwner: "b", LeaseTTL: time.Minute, Now: at(1)})
	mustOK(t, err)
	if claimed.ID != tk.ID {
		t.Errorf("replica b claimed %s, want %s", claimed.ID, tk.ID)
	}
	if _, err := other.TaskGet(t.Context(), tk.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another prefix sees the task: %v", err)
	}
	mustOK(t, other.Publish(t.Context(), event.Event{Type: "marker"}))
	if ev := recvEvent(t, subOther); ev.Type != "marker" {
		t.Errorf("another prefix got event %q before its own marker", ev.Type)
	}
}

// TestSubscriptionSurvivesReconnect: when Redis drops a subscriber's
// connection, go-redis reconnects and resubscribes and the channel stays
// open (the dispatcher treats a closed channel as fatal); only events
// published while it was down are lost.
func TestSubscriptionSurvivesReconnect(t *testing.T) {
	u := redistest.URL(t)
	name := "comfyfleet-test-" + uuid.NewString()
	sep := map[bool]string{true: "&", false: "?"}[strings.Contains(u, "?")]
	s, err := Open(t.Context(), u+sep+"client_name="+name, WithPrefix(redistest.Prefix(t, u)))
	mustOK(t, err)
	defer s.Close()
	sub, err := s.Subscribe(t.Context())
	mustOK(t, err)
	defer sub.Close()

	rdb := admin(t)
	killed, err := rdb.ClientKillByFilter(t.Context(), "ID", subscriberID(t, name)).Result()
	mustOK(t, err)
	if killed != 1 {
		t.Fatalf("killed %d connections, want 1", killed)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		mustOK(t, s.Publish(t.Context(), event.Event{Type: "ping", Time: int64(i)}))
		select {
		case ev, ok := <-sub.C():
			if !ok {
				t.Fatal("subscription closed after its connection was killed")
			}
			t.Logf("event %d received after the reconnect", ev.Time)
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("no event after the connection was killed")
		}
	}
}

// subscriberID finds the id of the subscribed connection named name.
func subscriberID(t *testing.T, name string) string {
	t.Helper()
	list, err := admin(t).ClientList(t.Context()).Result()
	mustOK(t, err)
	for _, line := range strings.Split(list, "\n") {
		fields := strings.Fields(line)
		if slices.Contains(fields, "name="+name) && slices.Contains(fields, "sub=1") {
			return strings.TrimPrefix(fields[0], "id=")
		}
	}
	t.Fatalf("no subscribed connection named %s in CLIENT LIST", name)
	return ""
}
