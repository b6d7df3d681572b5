package comfy

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// StreamOptions configures a Stream. Every field is optional.
type StreamOptions struct {
	// OnEvent receives every event, in order, synchronously from the read
	// loop: it must be fast (hand work off to a bounded queue), because
	// nothing is read while it runs. Malformed frames are logged and skipped.
	OnEvent func(Event)
	// OnConnect runs after each successful (re)connect and before the first
	// event of that connection is delivered, e.g. to resync from Queue and
	// History: events missed while disconnected are gone (ComfyUI buffers
	// nothing). ctx is Run's.
	OnConnect func(ctx context.Context)
	// OnDisconnect runs after an established connection ended and was closed,
	// with the error that ended it. Failed dials are only logged.
	OnDisconnect func(err error)
	// MinBackoff is the first reconnect delay. Default 250ms.
	MinBackoff time.Duration
	// MaxBackoff caps the reconnect delay, which doubles per failed attempt
	// (with jitter) and resets after a connection stayed up this long. Default 30s.
	MaxBackoff time.Duration
	// PingInterval is how often a connection is pinged; a ping unanswered
	// within PingInterval drops it. ComfyUI sends no heartbeat, so without
	// pings a dead network path is never noticed. Default 30s; negative disables.
	PingInterval time.Duration
	// Logger receives connect and disconnect logs. Default: discard.
	Logger *slog.Logger
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.OnEvent == nil {
		o.OnEvent = func(Event) {}
	}
	if o.OnConnect == nil {
		o.OnConnect = func(context.Context) {}
	}
	if o.OnDisconnect == nil {
		o.OnDisconnect = func(error) {}
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.PingInterval == 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Stream keeps one WebSocket to a ComfyUI instance open for as long as Run
// runs, reconnecting with exponential backoff and jitter, and delivers its
// events in order.
//
// Before it reconnects it closes the old socket and then waits at least half
// of MinBackoff: ComfyUI keeps a single socket per client id, and an old socket
// that closes after the new one registered would silently detach the new one.
type Stream struct {
	c         *Client
	opts      StreamOptions
	log       *slog.Logger
	running   atomic.Bool
	connected atomic.Bool
	// kick ends a reconnect wait early (Redial, Reconnect).
	kick chan struct{}

	// mu guards conn, the open connection (nil between connections).
	mu   sync.Mutex
	conn *Conn
}

// NewStream returns a stream for c's client id. Call Run to start it.
func NewStream(c *Client, opts StreamOptions) *Stream {
	opts = opts.withDefaults()
	log := opts.Logger.With("base_url", c.BaseURL(), "client_id", c.ClientID())
	return &Stream{c: c, opts: opts, log: log, kick: make(chan struct{}, 1)}
}

// Redial makes a stream that waits to reconnect try at once (e.g. when a
// health probe sees the instance back): the backoff is for instances that
// stay down, not for one known to be up. It does nothing to an open
// connection.
func (s *Stream) Redial() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Reconnect drops the open connection, if any, and dials again at once. It
// is the cure for a deaf socket: one ComfyUI detached (another socket
// registered under the same client id) that stays open and answers pings
// but receives no events. OnDisconnect and then OnConnect run as for any
// reconnect, so the caller resyncs there.
func (s *Stream) Reconnect() {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	s.Redial()
	if conn != nil {
		conn.closeNow()
	}
}

// dialTimeout bounds a WebSocket handshake, whatever the http.Client allows.
const dialTimeout = 30 * time.Second

// errStreamRunning is returned by a second concurrent Run: two sockets with
// one client id would detach each other.
var errStreamRunning = errors.New("comfy: stream is already running")

// Connected reports whether a connection is currently open.
func (s *Stream) Connected() bool { return s.connected.Load() }

// Run connects, delivers events and reconnects until ctx is done; then it
// closes the socket and returns nil. At most one socket is open at any time;
// a concurrent second Run returns an error at once.
func (s *Stream) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errStreamRunning
	}
	defer s.running.Store(false)
	attempt := 0
	for ctx.Err() == nil {
		upFor, err := s.runOnce(ctx)
		if ctx.Err() != nil {
			break
		}
		if upFor >= s.opts.MaxBackoff {
			attempt = 0
		}
		delay := backoff(s.opts.MinBackoff, s.opts.MaxBackoff, attempt)
		attempt++
		s.log.Warn("comfy websocket down", "err", err, "up_for", upFor, "retry_in", delay, "attempt", attempt)
		if s.wait(ctx, delay) {
			attempt = 0 // redialled on request: the instance is known to be up
		}
	}
	return nil
}

// runOnce dials, serves one connection until it fails and closes it. upFor
// is how long the connection was open (0 when the dial failed).
func (s *Stream) runOnce(ctx context.Context) (upFor time.Duration, err error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, err := s.c.Dial(dctx)
	cancel()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-s.kick: // a Redial from before this connection is spent
	default:
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	s.connected.Store(true)
	s.log.Info("comfy websocket connected")
	s.opts.OnConnect(ctx)
	err = s.serve(ctx, conn)
	_ = conn.Close() // close first: the next dial must not overlap this socket
	s.mu.Lock()
	s.conn = nil
	s.mu.Unlock()
	s.connected.Store(false)
	s.opts.OnDisconnect(err)
	return time.Since(start), err
}

// serve delivers conn's events until reading fails, pinging it meanwhile.
func (s *Stream) serve(ctx context.Context, conn *Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	if s.opts.PingInterval > 0 {
		wg.Go(func() { s.pingLoop(ctx, conn) })
	}
	for {
		ev, err := conn.Next(ctx)
		if errors.Is(err, ErrMalformedFrame) {
			s.log.Warn("comfy websocket frame skipped", "err", err)
			continue
		}
		if err != nil {
			return err
		}
		s.opts.OnEvent(ev)
	}
}

// pingLoop pings conn every PingInterval and drops it when a pong is late.
func (s *Stream) pingLoop(ctx context.Context, conn *Conn) {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.opts.PingInterval)
		err := conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			s.log.Warn("comfy websocket ping failed", "err", err)
			conn.closeNow()
			return
		}
	}
}

// backoff returns the delay before reconnect attempt n (from 0): min·2ⁿ capped
// at max, with "equal jitter" (uniform in [d/2, d]).
func backoff(minD, maxD time.Duration, n int) time.Duration {
	d := maxD
	if n < 32 && minD<<n > 0 && minD<<n < maxD {
		d = minD << n
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// redialFloor caps the pause before a dial that Redial asked for.
const redialFloor = 100 * time.Millisecond

// wait blocks for d, until ctx is done, or until Redial asks to dial now;
// true means Redial did. Even then it waits half of MinBackoff (at most
// redialFloor), so the socket just closed is gone on ComfyUI's side before
// the next one registers.
func (s *Stream) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	case <-s.kick:
	}
	if floor := min(s.opts.MinBackoff/2, redialFloor); floor < d {
		t.Reset(floor)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return true
}
