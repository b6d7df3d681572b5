package push

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait in these tests.
const waitTimeout = 10 * time.Second

// fakePubSub is an in-memory store.PubSub. Publish hands each event to every
// subscriber without a buffer, so a hub that stopped taking events would
// block the publisher, which the tests catch with a deadline.
type fakePubSub struct {
	// subscribed receives one value per Subscribe call.
	subscribed chan struct{}

	// mu guards subs.
	mu   sync.Mutex
	subs map[*fakeSub]struct{}
}

type fakeSub struct {
	ps   *fakePubSub
	c    chan event.Event
	done chan struct{}
	once sync.Once
}

var _ store.PubSub = (*fakePubSub)(nil)

func newFakePubSub() *fakePubSub {
	return &fakePubSub{subscribed: make(chan struct{}, 16), subs: map[*fakeSub]struct{}{}}
}

func (p *fakePubSub) Subscribe(ctx context.Context) (store.Subscription, error) {
	s := &fakeSub{ps: p, c: make(chan event.Event), done: make(chan struct{})}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	p.mu.Unlock()
	p.subscribed <- struct{}{}
	return s, nil
}

func (p *fakePubSub) Publish(ctx context.Context, evs ...event.Event) error {
	for _, ev := range evs {
		if err := p.publish(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

func (p *fakePubSub) publish(ctx context.Context, ev event.Event) error {
	p.mu.Lock()
	subs := make([]*fakeSub, 0, len(p.subs))
	for s := range p.subs {
		subs = append(subs, s)
	}
	p.mu.Unlock()
	for _, s := range subs {
		select {
		case s.c <- ev:
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// EventsAfter reads an empty log: the fake numbers no event.
func (p *fakePubSub) EventsAfter(context.Context, *store.EventsAfterParams) ([]event.Event, error) {
	return nil, nil
}

// LastEventSeq is that of an empty log.
func (p *fakePubSub) LastEventSeq(context.Context) (int64, error) { return 0, nil }

// endSubscriptions ends every subscription as a lost connection to the
// store would: their channels close. No Publish may be in flight.
func (p *fakePubSub) endSubscriptions() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.subs {
		delete(p.subs, s)
		close(s.c)
	}
}

func (s *fakeSub) C() <-chan event.Event { return s.c }

func (s *fakeSub) Close() error {
	s.once.Do(func() {
		s.ps.mu.Lock()
		delete(s.ps.subs, s)
		s.ps.mu.Unlock()
		close(s.done)
	})
	return nil
}

// harness is a running hub behind an httptest server. The handler takes the
// client from the query: ?user=alice&admin=1, and ttl=200ms for a token
// that expires.
type harness struct {
	t   testing.TB
	hub *Hub
	ps  *fakePubSub
	srv *httptest.Server
	// stop cancels Run and waits for it; safe to call twice.
	stop func() error
}

func newHarness(t testing.TB, opts Options, hooks testHooks) *harness {
	t.Helper()
	ps := newFakePubSub()
	hub := NewHub(ps, opts)
	hub.hooks = hooks
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c := Client{Username: q.Get("user"), Admin: q.Get("admin") == "1"}
		if ttl, err := time.ParseDuration(q.Get("ttl")); err == nil {
			c.Expires = time.Now().Add(ttl)
		}
		hub.Serve(w, r, c)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	waitFor(t, ps.subscribed, "hub subscription")
	return &harness{t: t, hub: hub, ps: ps, srv: srv, stop: stop}
}

// publish sends an event and fails the test if the hub does not take it in time.
func (h *harness) publish(ev event.Event) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.ps.Publish(ctx, ev); err != nil {
		h.t.Fatalf("publish %s: %v (the hub blocked the publisher)", ev.Type, err)
	}
}

// waitFor waits for a value on c or fails the test.
func waitFor[T any](t testing.TB, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// message is a decoded server message.
type message struct {
	Type      string          `json:"type"`
	Timestamp int64           `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	RequestID string          `json:"requestId"`
}

// client is a test WebSocket client.
type client struct {
	t  testing.TB
	ws *websocket.Conn
}

func (h *harness) dial(user string, admin bool) *client {
	h.t.Helper()
	ws, err := dialHub(h.t.Context(), h.srv.URL, user, admin, nil)
	if err != nil {
		h.t.Fatalf("dial %s: %v", user, err)
	}
	h.t.Cleanup(func() { _ = ws.CloseNow() })
	return &client{t: h.t, ws: ws}
}

func dialHub(ctx context.Context, base, user string, admin bool, header http.Header) (*websocket.Conn, error) {
	q := url.Values{"user": {user}}
	if admin {
		q.Set("admin", "1")
	}
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws?" + q.Encode()
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	return ws, nil
}

// next reads one message.
func (c *client) next() message {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("decode %q: %v", b, err)
	}
	return m
}

// nextNot reads until a message whose type is not one of skip.
func (c *client) nextNot(skip ...string) message {
	c.t.Helper()
	for {
		m := c.next()
		if !contains(skip, m.Type) {
			return m
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(websocket.MessageText, b)
}

func (c *client) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	if err := c.ws.Write(c.t.Context(), typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// closeError reads until the connection ends and returns how it ended.
func (c *client) closeError() websocket.CloseError {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		_, _, err := c.ws.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce
	}
}

// taskEvent builds a task event for owner's task id.
func taskEvent(typ, id, owner string) event.Event {
	data, _ := json.Marshal(map[string]any{"taskId": id, "progress": 50})
	return event.Event{Type: typ, TaskID: id, Owner: owner, Data: data, Time: 1704067200000}
}

// instanceEvent builds an instance_status event.
func instanceEvent(id string) event.Event {
	data, _ := json.Marshal(map[string]any{"instanceId": id, "alive": true, "busy": false})
	return event.Event{Type: event.TypeInstanceStatus, Data: data}
}

// signal returns a hook that closes the returned channel on its first call.
func signal() (func(), <-chan struct{}) {
	c := make(chan struct{})
	var once sync.Once
	return func() { once.Do(func() { close(c) }) }, c
}

// drops records the reasons given to Options.OnDrop.
type drops struct {
	// mu guards reasons.
	mu      sync.Mutex
	reasons []string
}

func (d *drops) add(reason string) {
	d.mu.Lock()
	d.reasons = append(d.reasons, reason)
	d.mu.Unlock()
}

func (d *drops) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.reasons...)
}
