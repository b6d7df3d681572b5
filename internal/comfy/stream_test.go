package comfy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// connCounter counts the client's open TCP connections.
type connCounter struct {
	// mu guards open and peak.
	mu         sync.Mutex
	open, peak int
}

func (cc *connCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.open++
	cc.peak = max(cc.peak, cc.open)
	return &countedConn{Conn: c, cc: cc}, nil
}

func (cc *connCounter) counts() (open, peak int) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.open, cc.peak
}

type countedConn struct {
	net.Conn
	cc   *connCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.cc.mu.Lock()
		c.cc.open--
		c.cc.mu.Unlock()
	})
	return c.Conn.Close()
}

// streamHarness runs a Stream against srv and exposes its callbacks as channels.
type streamHarness struct {
	s           *Stream
	conns       *connCounter
	connects    chan struct{}
	events      chan Event
	disconnects chan error
	cancel      context.CancelFunc
	done        chan error
	stopOnce    sync.Once
	t           *testing.T
}

func startStream(t *testing.T, url, id string, opts StreamOptions) *streamHarness {
	t.Helper()
	cc := &connCounter{}
	tr := &http.Transport{DialContext: cc.dial}
	t.Cleanup(tr.CloseIdleConnections)
	h := &streamHarness{
		conns: cc, connects: make(chan struct{}, 16), events: make(chan Event, 256),
		disconnects: make(chan error, 16), done: make(chan error, 1), t: t,
	}
	opts.OnConnect = func(context.Context) { h.connects <- struct{}{} }
	opts.OnEvent = func(ev Event) { h.events <- ev }
	opts.OnDisconnect = func(err error) { h.disconnects <- err }
	h.s = NewStream(New(url, id, &http.Client{Transport: tr}), opts)
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- h.s.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop cancels Run and waits for it to return; safe to call twice.
func (h *streamHarness) stop() {
	h.stopOnce.Do(func() {
		h.cancel()
		if err := recv(h.t, h.done, "Run to return"); err != nil {
			h.t.Errorf("Run returned %v, want nil", err)
		}
	})
}

// statusThen writes the connect-time status (with sid) and an executing
// frame naming the connection number, as a marker.
func statusThen(ctx context.Context, t testing.TB, c *websocket.Conn, sid string, n int) {
	for _, f := range []string{
		fmt.Sprintf(`{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": %q}}`, sid),
		fmt.Sprintf(`{"type": "executing", "data": {"node": "%d"}}`, n),
	} {
		if err := c.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			t.Errorf("write: %v", err)
			return
		}
	}
}

func TestStreamReconnectsAfterServerDrops(t *testing.T) {
	t.Parallel()
	const id = "gw-stream"
	srv := newWSServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		statusThen(ctx, t, c, id, n)
		if n < 3 {
			_ = c.CloseNow() // drop without a close handshake, as a crashing server does
			return
		}
		drain(ctx, c)
	})
	h := startStream(t, srv.srv.URL, id, StreamOptions{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond})

	for n := 1; n <= 3; n++ {
		recv(t, h.connects, "OnConnect "+strconv.Itoa(n))
		if ev := recv(t, h.events, "status"); ev.Type != EventStatus || ev.SID != id {
			t.Fatalf("connection %d: first event %+v, want status with sid", n, ev)
		}
		if ev := recv(t, h.events, "marker"); ev.Type != EventExecuting || ev.Node != strconv.Itoa(n) {
			t.Fatalf("connection %d: second event %+v, want executing %d", n, ev, n)
		}
		if n < 3 {
			if err := recv(t, h.disconnects, "OnDisconnect"); err == nil {
				t.Errorf("OnDisconnect got a nil error")
			}
		}
	}
	if !h.s.Connected() {
		t.Errorf("Connected() = false while connection 3 is open")
	}
	if err := h.s.Run(t.Context()); !errors.Is(err, errStreamRunning) {
		t.Errorf("second concurrent Run: got %v, want errStreamRunning", err)
	}
	h.stop()

	if h.s.Connected() {
		t.Errorf("Connected() = true after Run returned")
	}
	if open, peak := h.conns.counts(); open != 0 || peak != 1 {
		t.Errorf("client sockets: %d open at the end, peak %d; want 0 and 1", open, peak)
	}
	recv(t, h.disconnects, "OnDisconnect after cancel")
	srv.checkHandshakes(t, id)
}

func TestStreamPingDropsUnresponsiveConnection(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newWSServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		statusThen(ctx, t, c, "gw-ping", n)
		if n == 1 {
			<-release // never read: pings go unanswered, like a half-open connection
			return
		}
		drain(ctx, c)
	})
	t.Cleanup(func() { close(release) })
	h := startStream(t, srv.srv.URL, "gw-ping", StreamOptions{
		MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, PingInterval: 20 * time.Millisecond,
	})

	recv(t, h.connects, "first OnConnect")
	recv(t, h.disconnects, "OnDisconnect after the unanswered ping")
	recv(t, h.connects, "second OnConnect")
	for { // the server has written everything once the second marker arrives
		if ev := recv(t, h.events, "marker 2"); ev.Type == EventExecuting && ev.Node == "2" {
			break
		}
	}
	if _, peak := h.conns.counts(); peak != 1 {
		t.Errorf("peak client sockets %d, want 1", peak)
	}
}

func TestStreamKeepsRetryingUntilCanceled(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	attempts := 0
	enough := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if attempts++; attempts == 3 {
			close(enough)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	h := startStream(t, srv.URL, "gw-down", StreamOptions{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})

	recv(t, enough, "three dial attempts")
	h.stop()

	if len(h.connects) != 0 || len(h.disconnects) != 0 || h.s.Connected() {
		t.Errorf("callbacks ran without a connection: %d connects, %d disconnects", len(h.connects), len(h.disconnects))
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	const lo, hi = 10 * time.Millisecond, time.Second
	for n := range 70 {
		base := hi
		if n < 7 {
			base = lo << n
		}
		for range 20 {
			if d := backoff(lo, hi, n); d < base/2 || d > base {
				t.Fatalf("backoff(attempt %d) = %v, want within [%v, %v]", n, d, base/2, base)
			}
		}
	}
}

func TestStreamOptionDefaults(t *testing.T) {
	t.Parallel()
	o := StreamOptions{}.withDefaults()
	if o.MinBackoff != 250*time.Millisecond || o.MaxBackoff != 30*time.Second || o.PingInterval != 30*time.Second ||
		o.Logger == nil || o.OnEvent == nil || o.OnConnect == nil || o.OnDisconnect == nil {
		t.Errorf("defaults: %+v", o)
	}
	if o := (StreamOptions{MinBackoff: time.Minute}).withDefaults(); o.MaxBackoff != time.Minute {
		t.Errorf("MaxBackoff below MinBackoff: got %v, want %v", o.MaxBackoff, time.Minute)
	}
}

func TestStreamRedialSkipsBackoff(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	failed := make(chan struct{}, 16)
	ws := newWSServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		statusThen(ctx, t, c, "gw-redial", n)
		drain(ctx, c)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			failed <- struct{}{}
			return
		}
		ws.serveHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	// A backoff far longer than the test: only Redial can make it connect.
	h := startStream(t, srv.URL, "gw-redial", StreamOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour, PingInterval: -1})
	recv(t, failed, "the first dial, refused")
	up.Store(true)
	h.s.Redial()
	recv(t, h.connects, "OnConnect right after Redial")
	waitMarker(t, h, "1")
}

// waitMarker waits for the executing marker statusThen wrote on connection n.
func waitMarker(t *testing.T, h *streamHarness, n string) {
	t.Helper()
	for {
		if ev := recv(t, h.events, "marker "+n); ev.Type == EventExecuting && ev.Node == n {
			return
		}
	}
}

func TestStreamReconnectDropsAndRedials(t *testing.T) {
	t.Parallel()
	const id = "gw-deaf"
	srv := newWSServer(t, func(ctx context.Context, n int, c *websocket.Conn) {
		statusThen(ctx, t, c, id, n)
		drain(ctx, c) // answers pings, like a detached socket
	})
	h := startStream(t, srv.srv.URL, id, StreamOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour, PingInterval: -1})
	recv(t, h.connects, "first OnConnect")
	waitMarker(t, h, "1")
	h.s.Reconnect()
	recv(t, h.disconnects, "OnDisconnect after Reconnect")
	recv(t, h.connects, "second OnConnect, without the hour-long backoff")
	waitMarker(t, h, "2")
	if _, peak := h.conns.counts(); peak != 1 {
		t.Errorf("peak client sockets %d, want 1", peak)
	}
}
