// Package push is the client WebSocket hub behind /ws. The hub subscribes to
// the store's event channel, which carries the events of every gateway
// replica, and fans them out to the connected dashboards and API clients,
// filtered by what each client may see: a user gets their own tasks' events,
// and the instances without the ids of other users' tasks (viewer.go). It
// also sends global_status: once on connect and then at most once per
// interval while something changes.
//
// A slow client never slows the gateway: every connection has a bounded send
// queue, each event is encoded once per fan-out, and a connection whose queue
// overflows is closed with a reason (the client resyncs over REST) and
// counted, in the manner of tailscale's derp server.
package push

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Options configures a Hub. The zero value of every field means its default.
type Options struct {
	// Logger receives the hub's logs. Default: discard.
	Logger *slog.Logger
	// SendBuffer is the number of messages queued per connection before it
	// is closed for overflow. Default: 256.
	SendBuffer int
	// GlobalStatusInterval is the shortest time between two global_status
	// broadcasts; one is sent only when an event changed something since the
	// last. Default: 1s.
	GlobalStatusInterval time.Duration
	// GlobalStatusRate bounds the global_status messages written per second
	// over all clients: with more clients than that, the interval stretches
	// to clients/GlobalStatusRate seconds, and instance_status is held too:
	// each client gets at most one per instance per interval, the latest.
	// Every write is a system call, and thousands of dashboards each getting
	// every busy flip of every instance would cost more than the tasks they
	// watch. Default: 500.
	GlobalStatusRate int
	// Snapshot builds the data of global_status (overview and instances). It
	// is called on every connect and when a change is pending at the
	// interval. Data that differs by viewer implements Personal. Default: an
	// empty object.
	Snapshot func(ctx context.Context) (any, error)
	// Now is the clock for message timestamps. Default: time.Now.
	Now func() time.Time
	// OriginPatterns lists the extra origins allowed to open a socket, as
	// host patterns for path.Match (see websocket.AcceptOptions). The
	// request's own host is always allowed. Default: none (same origin only).
	OriginPatterns []string
	// WriteTimeout bounds one write to a client, and the wait for a pong.
	// Default: 10s.
	WriteTimeout time.Duration
	// PingInterval is how often a client is pinged to detect dead peers.
	// Default: 30s.
	PingInterval time.Duration
	// OnDrop is called with a Drop* reason each time a client is
	// disconnected for being too slow. Default: none.
	OnDrop func(reason string)
	// MaxConns bounds the connections of the hub; one more is refused with
	// 429 before the upgrade. Default: 10000.
	MaxConns int
	// MaxConnsPerUser bounds the connections of one username, in the same
	// way. Default: 32.
	MaxConnsPerUser int
	// EventData returns the data clients of this hub get for an event, live
	// or replayed, in place of ev.Data (or ev.Data itself). The gateway
	// renders task_completed's file URLs for itself there, as REST does
	// when a task is read: the replica that collected the files, whose
	// URLs the event carries, may be gone. It is called once per event
	// dispatched and per event replayed to a resuming client. Default:
	// ev.Data.
	EventData func(ev event.Event) json.RawMessage
}

// Why a client was disconnected for being too slow (Options.OnDrop).
const (
	DropOverflow     = "send_buffer_overflow" // its send queue filled up
	DropWriteTimeout = "write_timeout"        // one write took longer than WriteTimeout
	DropPingTimeout  = "ping_timeout"         // no pong within WriteTimeout
)

// Defaults of Options.
const (
	DefaultSendBuffer           = 256
	DefaultGlobalStatusInterval = time.Second
	DefaultGlobalStatusRate     = 500
	DefaultWriteTimeout         = 10 * time.Second
	DefaultPingInterval         = 30 * time.Second
	DefaultMaxConns             = 10000
	DefaultMaxConnsPerUser      = 32
)

// withDefaults fills the fields left at zero (or set negative).
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SendBuffer <= 0 {
		o.SendBuffer = DefaultSendBuffer
	}
	if o.GlobalStatusInterval <= 0 {
		o.GlobalStatusInterval = DefaultGlobalStatusInterval
	}
	if o.GlobalStatusRate <= 0 {
		o.GlobalStatusRate = DefaultGlobalStatusRate
	}
	if o.Snapshot == nil {
		o.Snapshot = func(context.Context) (any, error) { return struct{}{}, nil }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.OnDrop == nil {
		o.OnDrop = func(string) {}
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConnsPerUser <= 0 {
		o.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if o.EventData == nil {
		o.EventData = func(ev event.Event) json.RawMessage { return ev.Data }
	}
	return o
}

// Client is who is on the other end of a connection, as authenticated by the
// API layer.
type Client struct {
	Username string
	Admin    bool
	// Expires is when the client's token expires: the session is closed
	// then (policy violation, "token expired"). Zero: never.
	Expires time.Time
	// KeyID is the API key the session was opened with, if any: the
	// session is closed when the key is revoked (event.TypeKeyRevoked).
	KeyID string
}

// Hub fans events out to WebSocket clients. Create it with NewHub, start Run
// once, and hand each authenticated /ws request to Serve.
type Hub struct {
	sub  store.PubSub
	opts Options
	log  *slog.Logger

	// changed holds a pending global_status; capacity 1 so marking never blocks.
	changed chan struct{}
	// instMu guards instPending: with more clients than GlobalStatusRate,
	// the latest instance_status of each instance waits there for the next
	// flush (instLoop), woken through instKick.
	instMu      sync.Mutex
	instPending map[string]instanceMsg
	instKick    chan struct{}
	dropped     atomic.Uint64
	running     atomic.Bool
	// live counts connections being served; Run waits for them at shutdown.
	live sync.WaitGroup
	// lastSeq is the newest logged event dispatched; only pump's goroutine
	// uses it.
	lastSeq int64

	// mu guards conns, closed and the slots: slots counts the connections
	// being served or upgraded (MaxConns), userSlots the same per username
	// (MaxConnsPerUser).
	mu        sync.RWMutex
	conns     map[*conn]struct{}
	closed    bool
	slots     int
	userSlots map[string]int

	// finals are the requests waiting for tasks to end (AwaitFinal).
	finals finalWaiters

	// hooks let tests wait for events instead of sleeping; set before use.
	hooks testHooks
}

// testHooks are called, when set, as things happen to connections.
type testHooks struct {
	onDrop  func() // a connection was counted as dropped for overflow
	onLeave func() // a connection was unregistered
}

// NewHub returns a hub fed by sub.
func NewHub(sub store.PubSub, opts Options) *Hub {
	opts = opts.withDefaults()
	return &Hub{
		sub:     sub,
		opts:    opts,
		log:     opts.Logger,
		changed: make(chan struct{}, 1),
		conns:   make(map[*conn]struct{}),

		userSlots: map[string]int{},

		instPending: map[string]instanceMsg{},
		instKick:    make(chan struct{}, 1),
	}
}

// Clients returns the number of connected clients.
func (h *Hub) Clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// Dropped returns how many connections were closed because their send queue
// overflowed.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Run subscribes to the event channel and fans events out until ctx is done.
// A lost subscription is renewed with backoff, and clients get a fresh
// global_status since events may have been missed. When ctx is done Run
// closes every connection (status 1001, going away), waits for them and
// returns nil. Run may be called once.
func (h *Hub) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("push: hub already running")
	}
	var wg sync.WaitGroup
	wg.Go(func() { h.statusLoop(ctx) })
	wg.Go(func() { h.instLoop(ctx) })
	h.pump(ctx)
	wg.Wait()
	h.shutdown()
	return nil
}

// Subscription backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// pump keeps a subscription open and dispatches its events until ctx is done.
func (h *Hub) pump(ctx context.Context) {
	backoff := minBackoff
	for resync := false; ; resync = true {
		subscribed, err := h.consume(ctx, resync)
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			backoff = minBackoff
		}
		h.log.Warn("push: event subscription lost", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// consume dispatches one subscription's events until it ends or ctx is done.
// With resync, clients get a fresh global_status once subscribed, since
// events may have been missed while there was no subscription.
func (h *Hub) consume(ctx context.Context, resync bool) (subscribed bool, err error) {
	sub, err := h.sub.Subscribe(ctx)
	if err != nil {
		return false, err
	}
	defer sub.Close()
	if resync {
		h.markChanged()
		h.finals.wakeAll()
		h.catchUp(ctx, 0) // what was logged while there was no subscription
	}
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case ev, ok := <-sub.C():
			if !ok {
				return true, errors.New("subscription closed")
			}
			if ev.Seq > 0 {
				if ev.Seq <= h.lastSeq {
					continue // dispatched already, read from the log
				}
				if h.lastSeq > 0 && ev.Seq > h.lastSeq+1 {
					h.catchUp(ctx, ev.Seq) // the subscription lost some
				}
				h.lastSeq = ev.Seq
			}
			h.dispatch(ev)
		}
	}
}

// catchUp dispatches the logged events after lastSeq (and before before,
// unless 0) from the event log. Events it cannot read are lost to the
// clients connected now; a client that resumes later reads them itself.
func (h *Hub) catchUp(ctx context.Context, before int64) {
	for h.lastSeq > 0 {
		evs, err := h.sub.EventsAfter(ctx, &store.EventsAfterParams{After: h.lastSeq})
		if err != nil {
			h.log.Warn("push: read missed events", "after", h.lastSeq, "err", err)
			return
		}
		for _, ev := range evs {
			if before > 0 && ev.Seq >= before {
				return
			}
			h.lastSeq = ev.Seq
			h.dispatch(ev)
		}
		if len(evs) < store.MaxEventsPage {
			return
		}
	}
}

// dispatch forwards one event to the clients entitled to it. It never blocks
// on a client: the message is encoded once and offered to each queue.
func (h *Hub) dispatch(ev event.Event) {
	if ev.Type == event.TypeKeyRevoked {
		h.closeKey(ev)
		return
	}
	if isFinal(ev.Type) {
		h.finals.wake(ev.TaskID)
	}
	if marksChange(ev.Type) {
		h.markChanged()
	}
	a := event.AudienceOf(ev.Type)
	if a == event.Internal {
		return
	}
	ev.Data = h.opts.EventData(ev)
	msg, err := h.encodeSeq(ev.Type, ev.Time, ev.Data, "", ev.Seq)
	if err != nil {
		h.log.Error("push: encode event", "type", ev.Type, "task_id", ev.TaskID, "err", err)
		return
	}
	if a == event.Everyone {
		h.dispatchInstance(ev, msg)
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.conns {
		switch {
		case !c.wants(a, &ev):
		case ev.Type == event.TypeTaskPreview:
			c.offer(msg)
		default:
			c.deliver(ev.Seq, msg)
		}
	}
}

// dispatchInstance forwards an instance_status, each client getting the
// form it may see (the task id to admins and the task's owner only).
func (h *Hub) dispatchInstance(ev event.Event, full []byte) {
	m, err := h.newInstanceMsg(ev, full)
	if err != nil {
		h.log.Error("push: encode event", "type", ev.Type, "err", err)
		return
	}
	if h.Clients() > h.opts.GlobalStatusRate && h.holdInstance(ev, m) {
		return
	}
	h.broadcastInstance(m)
}

// broadcastInstance offers every client the form of m it may see.
func (h *Hub) broadcastInstance(m instanceMsg) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.conns {
		c.deliver(m.seq, m.forClient(c.client))
	}
}

// markChanged records that global_status is due, without blocking.
func (h *Hub) markChanged() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// statusLoop sends global_status when a change is pending, at most once per
// interval (throttle).
func (h *Hub) statusLoop(ctx context.Context) {
	h.throttle(ctx, h.changed, func() { h.broadcastStatus(ctx) })
}

// throttle calls send after each kick, at most once per statusInterval: a
// kick waits until an interval has passed since the previous send, and
// kicks arriving meanwhile fold into that one send.
func (h *Hub) throttle(ctx context.Context, kick <-chan struct{}, send func()) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		if wait := time.Until(last.Add(h.statusInterval(h.Clients()))); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		send()
		last = time.Now()
	}
}

// statusInterval is the shortest time between two global_status broadcasts
// to clients connections: the configured interval, stretched so that at
// most GlobalStatusRate messages go out per second.
func (h *Hub) statusInterval(clients int) time.Duration {
	return max(h.opts.GlobalStatusInterval, time.Duration(clients)*time.Second/time.Duration(h.opts.GlobalStatusRate))
}

// holdInstance keeps msg as its instance's latest instance_status until the
// next flush, replacing one still waiting. Every run start and end changes
// an instance's busy flag, and each goes to every client: with thousands of
// clients those writes cost more than the runs, so past GlobalStatusRate
// clients each client gets at most one instance_status per instance per
// global_status interval, the latest. False if the event names no instance.
func (h *Hub) holdInstance(ev event.Event, msg instanceMsg) bool {
	var d struct {
		InstanceID string `json:"instanceId"`
	}
	if json.Unmarshal(ev.Data, &d) != nil || d.InstanceID == "" {
		return false
	}
	h.instMu.Lock()
	h.instPending[d.InstanceID] = msg
	h.instMu.Unlock()
	select {
	case h.instKick <- struct{}{}:
	default:
	}
	return true
}

// instLoop flushes the held instance_status messages, at most once per
// global_status interval (throttle).
func (h *Hub) instLoop(ctx context.Context) {
	h.throttle(ctx, h.instKick, func() {
		h.instMu.Lock()
		pending := h.instPending
		h.instPending = make(map[string]instanceMsg, len(pending))
		h.instMu.Unlock()
		for _, msg := range pending {
			h.broadcastInstance(msg)
		}
	})
}

// broadcastStatus builds one global_status snapshot and offers each
// client the variant it may see (Personal), each variant encoded once.
func (h *Hub) broadcastStatus(ctx context.Context) {
	if h.Clients() == 0 {
		return
	}
	enc, err := h.newStatusEncoder(ctx)
	if err != nil {
		h.log.Warn("push: build global status", "err", err)
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.conns {
		msg, err := enc.forClient(c.client)
		if err != nil {
			h.log.Warn("push: encode global status", "err", err)
			return
		}
		c.enqueue(msg)
	}
}

// statusMessage encodes a global_status message for c from a fresh snapshot.
func (h *Hub) statusMessage(ctx context.Context, c Client) ([]byte, error) {
	enc, err := h.newStatusEncoder(ctx)
	if err != nil {
		return nil, err
	}
	return enc.forClient(c)
}

// errTooManyConns and errTooManyUserConns are the refusals of reserve.
var (
	errTooManyConns     = errors.New("too many WebSocket connections to this gateway; try again later")
	errTooManyUserConns = errors.New("too many WebSocket connections for this user; close one first")
)

// reserve takes a connection slot for user, or says why there is none.
func (h *Hub) reserve(user string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.slots >= h.opts.MaxConns:
		return errTooManyConns
	case h.userSlots[user] >= h.opts.MaxConnsPerUser:
		return errTooManyUserConns
	}
	h.slots++
	h.userSlots[user]++
	return nil
}

// release gives back a slot of reserve.
func (h *Hub) release(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.slots--
	if h.userSlots[user]--; h.userSlots[user] <= 0 {
		delete(h.userSlots, user)
	}
}

// register adds c unless the hub has shut down.
func (h *Hub) register(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.conns[c] = struct{}{}
	h.live.Add(1)
	return true
}

// unregister removes c once it is fully closed.
func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	if h.hooks.onLeave != nil {
		h.hooks.onLeave()
	}
	h.live.Done()
}

// shutdown closes every connection and waits until they are gone.
func (h *Hub) shutdown() {
	h.mu.Lock()
	h.closed = true
	for c := range h.conns {
		c.stop(reasonShutdown)
	}
	h.mu.Unlock()
	h.live.Wait()
}

// overflowed counts a connection closed for overflow.
func (h *Hub) overflowed(c *conn) {
	h.dropped.Add(1)
	h.log.Warn("push: client send buffer overflow, closing", "username", c.client.Username,
		"buffer", cap(c.send))
	h.opts.OnDrop(DropOverflow)
	if h.hooks.onDrop != nil {
		h.hooks.onDrop()
	}
}
