package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/google/go-cmp/cmp"
)

func TestConnectSendsGlobalStatusFirst(t *testing.T) {
	t.Parallel()
	snap := map[string]any{"overview": map[string]int{"totalInstances": 2}, "instances": []string{"a", "b"}}
	now := time.UnixMilli(1704067200123)
	h := newHarness(t, Options{
		Snapshot: func(context.Context) (any, error) { return snap, nil },
		Now:      func() time.Time { return now },
	}, testHooks{})
	c := h.dial("alice", false)

	m := c.next()
	if m.Type != TypeGlobalStatus || m.Timestamp != now.UnixMilli() {
		t.Fatalf("first message %s at %d, want %s at %d", m.Type, m.Timestamp, TypeGlobalStatus, now.UnixMilli())
	}
	want, _ := json.Marshal(snap)
	if string(m.Data) != string(want) {
		t.Errorf("global_status data = %s, want %s", m.Data, want)
	}
	if got := h.hub.Clients(); got != 1 {
		t.Errorf("Clients() = %d, want 1", got)
	}
}

func TestClientMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{}, testHooks{})
	c := h.dial("alice", false)
	c.next() // global_status

	tests := []struct {
		name      string
		typ       websocket.MessageType
		send      string
		wantType  string
		wantReqID string
		wantCode  string
	}{
		{"ping", websocket.MessageText, `{"type":"ping","requestId":"x"}`, TypePong, "x", ""},
		{"unknown type", websocket.MessageText, `{"type":"dance","requestId":"y"}`, TypeError, "y", ErrCodeUnknownType},
		{"malformed json", websocket.MessageText, `{"type":`, TypeError, "", ErrCodeBadMessage},
		{"not an object", websocket.MessageText, `[1,2]`, TypeError, "", ErrCodeBadMessage},
		{"binary", websocket.MessageBinary, `{"type":"ping"}`, TypeError, "", ErrCodeBadMessage},
		{"bad subscribe data", websocket.MessageText, `{"type":"subscribe","data":{"taskIds":7},"requestId":"z"}`, TypeError, "z", ErrCodeBadMessage},
		{"still connected", websocket.MessageText, `{"type":"ping","requestId":"again"}`, TypePong, "again", ""},
	}
	for _, tt := range tests { // sequential: one connection
		c.sendRaw(tt.typ, []byte(tt.send))
		m := c.next()
		var data errorData
		_ = json.Unmarshal(m.Data, &data)
		if m.Type != tt.wantType || m.RequestID != tt.wantReqID || data.Error != tt.wantCode {
			t.Errorf("%s: got %s requestId=%q error=%q, want %s requestId=%q error=%q",
				tt.name, m.Type, m.RequestID, data.Error, tt.wantType, tt.wantReqID, tt.wantCode)
		}
		if m.Timestamp == 0 {
			t.Errorf("%s: timestamp not set", tt.name)
		}
	}
}

// seen is what a client received: type and task or instance id.
type seen struct{ Type, ID string }

// collect reads until the sentinel instance_status, skipping global_status.
func collect(c *client, sentinel string) []seen {
	c.t.Helper()
	var got []seen
	for {
		m := c.nextNot(TypeGlobalStatus)
		var d struct{ TaskID, InstanceID string }
		if err := json.Unmarshal(m.Data, &d); err != nil {
			c.t.Fatalf("decode %s data %s: %v", m.Type, m.Data, err)
		}
		if m.Type == event.TypeInstanceStatus && d.InstanceID == sentinel {
			return got
		}
		got = append(got, seen{m.Type, d.TaskID + d.InstanceID})
	}
}

func TestEntitlement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{}, testHooks{})
	clients := map[string]*client{
		"admin": h.dial("root", true),
		"alice": h.dial("alice", false),
		"bob":   h.dial("bob", false),
		"anon":  h.dial("", false),
	}
	for _, c := range clients {
		c.next() // global_status: registered
	}
	for _, ev := range []struct{ typ, id, owner string }{
		{event.TypeTaskStatus, "t1", "alice"},
		{event.TypeTaskProgress, "t1", "alice"},
		{"task_queued", "t1", "alice"}, // internal: never forwarded
		{event.TypeTaskCompleted, "t2", "bob"},
		{event.TypeTaskFailed, "t3", "alice"},
		{event.TypeTaskCancelled, "t4", ""}, // no owner: admins only
		{TypeGlobalStatus, "", ""},          // only the hub builds global_status
		{"something_new", "t1", "alice"},
		{event.TypeTaskPreview, "t5", "alice"},
	} {
		h.publish(taskEvent(ev.typ, ev.id, ev.owner))
	}
	bad := instanceEvent("broken")
	bad.Data = []byte(`{"instanceId":`) // not JSON: skipped, not fatal
	h.publish(bad)
	h.publish(instanceEvent("127.0.0.1:8001"))
	h.publish(instanceEvent("done"))

	inst := seen{event.TypeInstanceStatus, "127.0.0.1:8001"}
	want := map[string][]seen{
		"admin": {{event.TypeTaskStatus, "t1"}, {event.TypeTaskProgress, "t1"}, {event.TypeTaskCompleted, "t2"},
			{event.TypeTaskFailed, "t3"}, {event.TypeTaskCancelled, "t4"}, {event.TypeTaskPreview, "t5"}, inst},
		"alice": {{event.TypeTaskStatus, "t1"}, {event.TypeTaskProgress, "t1"}, {event.TypeTaskFailed, "t3"}, {event.TypeTaskPreview, "t5"}, inst},
		"bob":   {{event.TypeTaskCompleted, "t2"}, inst},
		"anon":  {inst},
	}
	for name, c := range clients {
		if diff := cmp.Diff(want[name], collect(c, "done")); diff != "" {
			t.Errorf("%s received (-want +got):\n%s", name, diff)
		}
	}
}

func TestSubscribeNarrows(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{}, testHooks{})
	alice := h.dial("alice", false)
	admin := h.dial("root", true)
	alice.next()
	admin.next()

	subscribe := func(c *client, reqID string, ids []string) {
		t.Helper()
		c.send(map[string]any{"type": "subscribe", "requestId": reqID, "data": map[string]any{"taskIds": ids}})
		m := c.nextNot(TypeGlobalStatus)
		var d subscribeData
		_ = json.Unmarshal(m.Data, &d)
		if m.Type != TypeSubscribed || m.RequestID != reqID || len(d.TaskIDs) != len(ids) {
			t.Fatalf("subscribe %v: got %s %q %s", ids, m.Type, m.RequestID, m.Data)
		}
	}
	round := func(sentinel string) {
		for _, ev := range []struct{ id, owner string }{{"t1", "alice"}, {"t2", "alice"}, {"t3", "bob"}} {
			h.publish(taskEvent(event.TypeTaskProgress, ev.id, ev.owner))
		}
		h.publish(instanceEvent(sentinel))
	}
	progress := func(ids ...string) []seen {
		var s []seen
		for _, id := range ids {
			s = append(s, seen{event.TypeTaskProgress, id})
		}
		return s
	}

	subscribe(alice, "s1", []string{"t1", "t3"}) // t3 is bob's: still not entitled
	subscribe(admin, "s2", []string{"t2", "t3"})
	round("r1")
	if diff := cmp.Diff(progress("t1"), collect(alice, "r1")); diff != "" {
		t.Errorf("alice narrowed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(progress("t2", "t3"), collect(admin, "r1")); diff != "" {
		t.Errorf("admin narrowed (-want +got):\n%s", diff)
	}

	subscribe(alice, "s3", nil) // reset to the default
	subscribe(admin, "s4", []string{})
	round("r2")
	if diff := cmp.Diff(progress("t1", "t2"), collect(alice, "r2")); diff != "" {
		t.Errorf("alice after reset (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(progress("t1", "t2", "t3"), collect(admin, "r2")); diff != "" {
		t.Errorf("admin after reset (-want +got):\n%s", diff)
	}

	ids := make([]string, MaxSubscribeTaskIDs+1)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	alice.send(map[string]any{"type": "subscribe", "requestId": "big", "data": map[string]any{"taskIds": ids}})
	if m := alice.nextNot(TypeGlobalStatus); m.Type != TypeError || m.RequestID != "big" {
		t.Errorf("oversized subscribe: got %s %q, want error \"big\"", m.Type, m.RequestID)
	}
}

func TestGlobalStatusThrottled(t *testing.T) {
	t.Parallel()
	const interval = 50 * time.Millisecond
	h := newHarness(t, Options{GlobalStatusInterval: interval}, testHooks{})
	c := h.dial("alice", false)
	c.next() // the connect snapshot
	statuses := make(chan int64, 1000)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			_, b, err := c.ws.Read(context.Background())
			if err != nil {
				return
			}
			var m message
			if json.Unmarshal(b, &m) == nil && m.Type == TypeGlobalStatus {
				statuses <- m.Timestamp
			}
		}
	}()

	// Change something every 2ms for 8 intervals.
	window := time.After(8 * interval)
	tick := time.NewTicker(2 * time.Millisecond)
	published := 0
publishing:
	for {
		select {
		case <-window:
			break publishing
		case <-tick.C:
			h.publish(instanceEvent("127.0.0.1:8001"))
			published++
		}
	}
	tick.Stop()

	// The last change is reported within one interval; then silence.
	var got []int64
	quiet := time.NewTimer(3 * interval)
	for done := false; !done; {
		select {
		case ts := <-statuses:
			got = append(got, ts)
			quiet.Reset(3 * interval)
		case <-quiet.C:
			done = true
		}
	}
	_ = c.ws.CloseNow()
	<-readDone

	t.Logf("%d events published, %d global_status received", published, len(got))
	if len(got) < 3 || len(got) > 8+2 {
		t.Errorf("got %d global_status for 8 intervals of changes, want 3..10", len(got))
	}
	for i := 1; i < len(got); i++ {
		if gap := time.Duration(got[i]-got[i-1]) * time.Millisecond; gap < interval-time.Millisecond {
			t.Errorf("global_status %d came %v after the previous, want >= %v", i, gap, interval)
		}
	}
}

func TestSlowClientDropped(t *testing.T) {
	t.Parallel()
	onDrop, dropped := signal()
	var reported drops
	h := newHarness(t, Options{SendBuffer: 16, GlobalStatusInterval: time.Hour, OnDrop: reported.add}, testHooks{onDrop: onDrop})
	fast := h.dial("fast", true)
	slow := h.dial("slow", true)
	fast.next()
	slow.next() // then never reads again until dropped

	payload := strings.Repeat("x", 8<<10)
	event := func(seq int) {
		ev := instanceEvent(fmt.Sprint(seq))
		ev.Data, _ = json.Marshal(map[string]any{"instanceId": fmt.Sprint(seq), "pad": payload})
		h.publish(ev) // fails the test if the hub blocks the publisher
		m := fast.nextNot(TypeGlobalStatus)
		var d struct{ InstanceID string }
		_ = json.Unmarshal(m.Data, &d)
		if d.InstanceID != fmt.Sprint(seq) {
			t.Fatalf("fast client got %s %q, want instance %d: it missed events", m.Type, d.InstanceID, seq)
		}
	}
	// Lock-step with the fast client until the slow one's socket and queue fill.
	seq := 0
	for ; ; seq++ {
		if seq > 100000 {
			t.Fatal("slow client never overflowed")
		}
		event(seq)
		select {
		case <-dropped:
		default:
			continue
		}
		break
	}
	t.Logf("slow client dropped after %d events of %d KiB", seq+1, len(payload)>>10)
	for i := 1; i <= 20; i++ {
		event(seq + i) // the fast client still gets everything
	}
	if got := h.hub.Dropped(); got != 1 {
		t.Errorf("Dropped() = %d, want 1", got)
	}
	if got := reported.list(); len(got) != 1 || got[0] != DropOverflow {
		t.Errorf("OnDrop reasons = %v, want [%s]", got, DropOverflow)
	}
	ce := slow.closeError()
	if ce.Code != websocket.StatusTryAgainLater || ce.Reason != OverflowReason {
		t.Errorf("slow client closed with %d %q, want %d %q",
			ce.Code, ce.Reason, websocket.StatusTryAgainLater, OverflowReason)
	}
}

// TestPreviewsSkippedForSlowClient: a client that is behind misses
// previews (the next one replaces them anyway) instead of being dropped for
// overflow. 32 MiB of previews is far more than fills a socket that is not
// read (TestSlowClientDropped overflows with less).
func TestPreviewsSkippedForSlowClient(t *testing.T) {
	t.Parallel()
	// The slow client's writer blocks on its full socket for the whole
	// test: a write timeout longer than any run of it, loaded machine
	// included (TestSlowClientDropped covers that timeout). No pings: one
	// sent to the blocked client would time out and drop it, on a machine
	// slow enough for the test to outlast the default interval.
	h := newHarness(t, Options{SendBuffer: 16, GlobalStatusInterval: time.Hour, WriteTimeout: 5 * time.Minute, PingInterval: time.Hour}, testHooks{})
	fast := h.dial("fast", true)
	slow := h.dial("slow", true)
	fast.next()
	slow.next() // then never reads again

	image := strings.Repeat("x", 32<<10)
	for seq := range 1024 { // in lock-step with the fast client
		ev := taskEvent(event.TypeTaskPreview, "t1", "alice")
		ev.Data, _ = json.Marshal(map[string]any{"taskId": "t1", "seq": seq, "image": image})
		h.publish(ev)
		m := fast.nextNot(TypeGlobalStatus)
		var d struct{ Seq int }
		_ = json.Unmarshal(m.Data, &d)
		if m.Type != event.TypeTaskPreview || d.Seq != seq {
			t.Fatalf("fast client got %s, want preview %d", m.Type, seq)
		}
		if n := queued(h.hub, "slow"); n < 0 || n > 8 {
			t.Fatalf("after preview %d the slow client has %d messages queued, want at most 8 (and connected)", seq, n)
		}
	}
	if got := h.hub.Dropped(); got != 0 {
		t.Errorf("Dropped() = %d, want 0: previews must not overflow a client", got)
	}
	_ = slow.ws.CloseNow()
}

// TestOfferStopsAtHalf: offer queues only into a queue less than half full.
func TestOfferStopsAtHalf(t *testing.T) {
	t.Parallel()
	c := &conn{send: make(chan []byte, 4), quit: make(chan struct{})}
	for range 10 {
		c.offer([]byte("p"))
	}
	if len(c.send) != 2 {
		t.Errorf("queued %d previews into a queue of 4, want 2", len(c.send))
	}
	c.enqueue([]byte("status"))
	if len(c.send) != 3 {
		t.Errorf("queued %d after a task_status, want 3", len(c.send))
	}
}

// queued is the send queue length of user's connection (-1 if none).
func queued(h *Hub, user string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.conns {
		if c.client.Username == user {
			return len(c.send)
		}
	}
	return -1
}

func TestDeadPeerDetected(t *testing.T) {
	t.Parallel()
	onLeave, left := signal()
	var reported drops
	h := newHarness(t, Options{PingInterval: 20 * time.Millisecond, WriteTimeout: 50 * time.Millisecond, OnDrop: reported.add},
		testHooks{onLeave: onLeave})
	c := h.dial("alice", false)
	c.next() // then stop reading: pings go unanswered
	waitFor(t, left, "the dead client to be dropped")
	if got := h.hub.Clients(); got != 0 {
		t.Errorf("Clients() = %d after the dead client left, want 0", got)
	}
	if got := h.hub.Dropped(); got != 0 {
		t.Errorf("Dropped() = %d, want 0: a dead peer is not an overflow", got)
	}
	if got := reported.list(); len(got) != 1 || got[0] != DropPingTimeout {
		t.Errorf("OnDrop reasons = %v, want [%s]", got, DropPingTimeout)
	}
}

func TestShutdownClosesClients(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{}, testHooks{})
	a, b := h.dial("alice", false), h.dial("root", true)
	a.next()
	b.next()

	// Clients keep reading so they answer the close handshake.
	closes := make(chan websocket.CloseError, 2)
	for _, c := range []*client{a, b} {
		go func() { closes <- c.closeError() }()
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	for range 2 {
		if ce := waitFor(t, closes, "close"); ce.Code != websocket.StatusGoingAway {
			t.Errorf("client closed with %d %q, want %d", ce.Code, ce.Reason, websocket.StatusGoingAway)
		}
	}
	if got := h.hub.Clients(); got != 0 {
		t.Errorf("Clients() = %d after shutdown, want 0", got)
	}

	late := h.dial("late", false)
	if ce := late.closeError(); ce.Code != websocket.StatusGoingAway {
		t.Errorf("client after shutdown closed with %d, want %d", ce.Code, websocket.StatusGoingAway)
	}
	if err := h.hub.Run(context.Background()); err == nil {
		t.Error("second Run returned nil, want an error")
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{OriginPatterns: []string{"dash.example.com"}}, testHooks{})
	tests := []struct {
		name, origin string
		wantStatus   int
	}{
		{"foreign origin", "http://evil.example", http.StatusForbidden},
		{"allowed pattern", "https://dash.example.com", http.StatusSwitchingProtocols},
		{"same origin", h.srv.URL, http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		ws, err := dialHub(t.Context(), h.srv.URL, "alice", false, http.Header{"Origin": {tt.origin}})
		switch {
		case tt.wantStatus == http.StatusSwitchingProtocols && err != nil:
			t.Errorf("%s: dial failed: %v", tt.name, err)
		case tt.wantStatus != http.StatusSwitchingProtocols && err == nil:
			t.Errorf("%s: dial succeeded, want %d", tt.name, tt.wantStatus)
		}
		if ws != nil {
			_ = ws.CloseNow()
		}
	}
	for _, origin := range []string{"", "http://evil.example"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.srv.URL+"/ws", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
		}
		checkErrorEnvelope(t, req)
	}
}

// checkErrorEnvelope asserts that a refused request gets the contract's JSON error.
func checkErrorEnvelope(t *testing.T, req *http.Request) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Code           int
		Error, Message string
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Code != resp.StatusCode || env.Error == "" {
		t.Errorf("refusal %d body %q is not the error envelope", resp.StatusCode, body)
	}
	if resp.StatusCode < 400 {
		t.Errorf("status %d, want a refusal", resp.StatusCode)
	}
}

func TestSnapshotFailureClosesWithReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{
		Snapshot: func(context.Context) (any, error) { return nil, errors.New("store down") },
	}, testHooks{})
	c := h.dial("alice", false)
	if ce := c.closeError(); ce.Code != websocket.StatusTryAgainLater || ce.Reason != reasonSnapshot.text {
		t.Errorf("closed with %d %q, want %d %q", ce.Code, ce.Reason, websocket.StatusTryAgainLater, reasonSnapshot.text)
	}
}

func TestResubscribeAfterLostSubscription(t *testing.T) {
	t.Parallel()
	snapshots := make(chan struct{}, 100)
	h := newHarness(t, Options{
		Snapshot: func(context.Context) (any, error) { snapshots <- struct{}{}; return struct{}{}, nil },
	}, testHooks{})
	c := h.dial("alice", false)
	c.next()
	<-snapshots

	h.ps.endSubscriptions()
	waitFor(t, h.ps.subscribed, "the hub to subscribe again")
	if m := c.next(); m.Type != TypeGlobalStatus {
		t.Errorf("after resubscribing got %s, want a resync global_status", m.Type)
	}
	h.publish(instanceEvent("127.0.0.1:8001"))
	if m := c.nextNot(TypeGlobalStatus); m.Type != event.TypeInstanceStatus {
		t.Errorf("after resubscribing got %s, want %s", m.Type, event.TypeInstanceStatus)
	}
}

// TestStatusIntervalStretchesWithClients: past GlobalStatusRate clients the
// global_status interval grows, so the messages per second stay bounded.
func TestStatusIntervalStretchesWithClients(t *testing.T) {
	t.Parallel()
	h := NewHub(newFakePubSub(), Options{GlobalStatusInterval: time.Second, GlobalStatusRate: 500})
	for clients, want := range map[int]time.Duration{
		0: time.Second, 1: time.Second, 500: time.Second, 1000: 2 * time.Second, 2000: 4 * time.Second, 10000: 20 * time.Second,
	} {
		if got := h.statusInterval(clients); got != want {
			t.Errorf("statusInterval(%d) = %v, want %v", clients, got, want)
		}
	}
	if got := NewHub(newFakePubSub(), Options{}).statusInterval(2000); got != 4*time.Second {
		t.Errorf("default statusInterval(2000) = %v, want 4s (rate %d)", got, DefaultGlobalStatusRate)
	}
}

// TestInstanceStatusHeldPastRate: with more clients than GlobalStatusRate,
// each client gets at most one instance_status per instance per interval,
// and the latest state always arrives.
func TestInstanceStatusHeldPastRate(t *testing.T) {
	t.Parallel()
	// Two clients at a rate of 1/s: one global_status interval is 2 s.
	h := newHarness(t, Options{GlobalStatusInterval: 10 * time.Millisecond, GlobalStatusRate: 1}, testHooks{})
	a, b := h.dial("alice", false), h.dial("bob", true)
	a.next() // the connect snapshots: both are registered
	b.next()
	const flips = 40
	for i := range flips {
		data, _ := json.Marshal(map[string]any{"instanceId": "i1", "alive": true, "busy": i%2 == 0, "currentTaskId": fmt.Sprint(i)})
		h.publish(event.Event{Type: event.TypeInstanceStatus, Data: data, Owner: "alice"})
	}
	h.publish(instanceEvent("i2"))
	for _, c := range []*client{a, b} {
		seen, last := 0, ""
		for last != fmt.Sprint(flips-1) {
			m := c.nextNot(TypeGlobalStatus)
			var d struct {
				InstanceID    string `json:"instanceId"`
				CurrentTaskID string `json:"currentTaskId"`
			}
			if err := json.Unmarshal(m.Data, &d); err != nil || m.Type != event.TypeInstanceStatus {
				t.Fatalf("got %s %s, want instance_status", m.Type, m.Data)
			}
			if d.InstanceID == "i1" {
				seen++
				last = d.CurrentTaskID
			}
		}
		// One flush may go out at the first flip, the next one at most an
		// interval later with the latest.
		if seen > 3 {
			t.Errorf("%d instance_status of i1 for %d flips; want them folded into at most 3", seen, flips)
		}
	}
}

// TestConnectionCaps: past MaxConnsPerUser for one user, or MaxConns in all,
// the upgrade is refused with 429 in the envelope; a slot comes back when a
// connection ends.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	left := make(chan struct{}, 10)
	h := newHarness(t, Options{MaxConns: 3, MaxConnsPerUser: 2}, testHooks{onLeave: func() { left <- struct{}{} }})
	a1, a2 := h.dial("alice", false), h.dial("alice", false)
	a1.next()
	a2.next()
	wantRefused(t, h, "alice", http.StatusTooManyRequests, "too_many_connections")
	h.dial("bob", false).next()
	wantRefused(t, h, "carol", http.StatusTooManyRequests, "too_many_connections")

	_ = a1.ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, left, "alice's first connection to leave")
	h.dial("alice", false).next()
}

// wantRefused checks that an upgrade for user is refused before it happens,
// with status and the error code in the envelope.
func wantRefused(t *testing.T, h *harness, user string, status int, code string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.srv.URL+"/ws?user="+user, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Code  int
		Error string
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &env); err != nil || resp.StatusCode != status || env.Code != status || env.Error != code {
		t.Errorf("upgrade for %s: %d %s, want %d with %q in the envelope", user, resp.StatusCode, body, status, code)
	}
}

// TestTokenExpiryClosesSession: a session ends when its token expires, with
// a policy-violation close and a reason.
func TestTokenExpiryClosesSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{}, testHooks{})
	ws, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(h.srv.URL, "http")+"/ws?user=alice&ttl=300ms", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	c := &client{t: t, ws: ws}
	if m := c.next(); m.Type != TypeGlobalStatus {
		t.Fatalf("first message %q", m.Type)
	}
	start := time.Now()
	ce := c.closeError()
	if ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "token expired") {
		t.Errorf("closed with %d %q, want %d and a reason saying the token expired", ce.Code, ce.Reason, websocket.StatusPolicyViolation)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("closed %v after connecting, want at the token's expiry", took)
	}
}

// TestStalledWriteDropped: a client whose socket takes nothing for
// WriteTimeout is dropped for it, and the drop is reported as such.
func TestStalledWriteDropped(t *testing.T) {
	t.Parallel()
	onLeave, left := signal()
	var reported drops
	h := newHarness(t, Options{SendBuffer: 64, GlobalStatusInterval: time.Hour, PingInterval: time.Hour,
		WriteTimeout: 200 * time.Millisecond, OnDrop: reported.add}, testHooks{onLeave: onLeave})
	c := h.dial("alice", false)
	c.next() // then never reads again
	payload := strings.Repeat("x", 256<<10)
	for i := 0; ; i++ {
		select {
		case <-left:
		default:
			if i > 1000 {
				t.Fatal("the stalled client was never dropped")
			}
			ev := instanceEvent(fmt.Sprint(i))
			ev.Data, _ = json.Marshal(map[string]any{"instanceId": fmt.Sprint(i), "pad": payload})
			h.publish(ev)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	if got := reported.list(); len(got) != 1 || got[0] != DropWriteTimeout {
		t.Errorf("OnDrop reasons = %v, want [%s]", got, DropWriteTimeout)
	}
}
