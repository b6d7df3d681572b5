package push

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/comfyfleet/comfyfleet/internal/cork"
)

// readLimit bounds one client message; a subscribe with the maximum number
// of task ids fits.
const readLimit = 64 << 10

// OverflowReason is the close reason of a connection whose queue overflowed.
const OverflowReason = "send buffer overflow: resync over REST"

// closeReason says how a connection ends.
type closeReason struct {
	code websocket.StatusCode
	text string
	// abrupt closes without a handshake: the peer is gone or broken.
	abrupt bool
}

var (
	reasonOverflow = closeReason{code: websocket.StatusTryAgainLater, text: OverflowReason}
	reasonShutdown = closeReason{code: websocket.StatusGoingAway, text: "server shutting down"}
	reasonSnapshot = closeReason{code: websocket.StatusTryAgainLater, text: "global status unavailable"}
	reasonGone     = closeReason{abrupt: true}
	reasonExpired  = closeReason{code: websocket.StatusPolicyViolation, text: "token expired: log in again"}
	reasonRevoked  = closeReason{code: websocket.StatusPolicyViolation, text: "API key revoked"}
)

// conn is one client connection. The hub's fan-out only ever calls enqueue,
// which never blocks; the connection's own goroutines do the I/O.
type conn struct {
	hub    *Hub
	ws     *websocket.Conn
	nc     *cork.Conn // the connection under ws
	client Client
	send   chan []byte
	// filter is the set of task ids the client subscribed to; nil means all.
	filter atomic.Pointer[map[string]struct{}]
	// resuming is set for a connection opened with ?since= (resume.go); rmu
	// guards res.
	resuming atomic.Bool
	rmu      sync.Mutex
	res      resume

	// quit is closed by the first stop; reason is written before it closes.
	quit     chan struct{}
	stopOnce sync.Once
	reason   closeReason
}

// Serve upgrades an authenticated /ws request and serves the client until it
// leaves, its queue overflows, its token expires (Client.Expires) or the hub
// shuts down. A request that is not a WebSocket upgrade gets 400, a
// cross-origin one not allowed by Options.OriginPatterns 403, and one past
// Options.MaxConns or MaxConnsPerUser 429, all in the contract's error
// envelope and before the upgrade.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, c Client) {
	if !isUpgrade(r) {
		writeError(w, http.StatusBadRequest, "not_websocket", "this endpoint speaks WebSocket only")
		return
	}
	if !originAllowed(r, h.opts.OriginPatterns) {
		writeError(w, http.StatusForbidden, "origin_not_allowed", "cross-origin WebSocket not allowed")
		return
	}
	since, err := parseSince(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_since", err.Error())
		return
	}
	if err := h.reserve(c.Username); err != nil {
		writeError(w, http.StatusTooManyRequests, "too_many_connections", err.Error())
		return
	}
	defer h.release(c.Username)
	// A session outlives the server's read and write timeouts: the pings
	// and the write timeout bound it instead. net/http clears the deadlines
	// when the connection is hijacked; clearing them here does not depend on it.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	cw := &cork.Writer{ResponseWriter: w, Timeout: h.opts.WriteTimeout}
	ws, err := websocket.Accept(cw, r, &websocket.AcceptOptions{OriginPatterns: h.opts.OriginPatterns})
	if err != nil {
		h.log.Debug("push: websocket accept", "err", err)
		return
	}
	ws.SetReadLimit(readLimit)
	cn := &conn{hub: h, ws: ws, nc: cw.Conn(), client: c, send: make(chan []byte, h.opts.SendBuffer), quit: make(chan struct{})}
	if since >= 0 {
		cn.res = resume{since: since, replaying: true}
		cn.resuming.Store(true)
	}
	if !h.register(cn) {
		_ = ws.Close(reasonShutdown.code, reasonShutdown.text)
		return
	}
	defer h.unregister(cn)
	cn.run(r.Context())
}

// run drives the connection: global_status first, then the queue, while a
// reader answers client messages and a pinger watches for a dead peer.
func (c *conn) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(c.readLoop)
	wg.Go(c.pingLoop)
	if c.sendSnapshot(ctx) && (!c.resuming.Load() || c.replay(ctx)) {
		c.writeLoop()
	}
	c.close()
	wg.Wait()
}

// sendSnapshot writes the first global_status, ahead of anything queued.
func (c *conn) sendSnapshot(ctx context.Context) bool {
	msg, err := c.hub.statusMessage(ctx, c.client)
	if err != nil {
		c.hub.log.Warn("push: build global status for a new client", "err", err)
		c.stop(reasonSnapshot)
		return false
	}
	if err := c.write(msg); err != nil {
		c.fail(err, DropWriteTimeout)
		return false
	}
	return true
}

// writeLoop writes queued messages until the connection is stopped.
func (c *conn) writeLoop() {
	for {
		select {
		case <-c.quit:
			return
		default:
		}
		select {
		case <-c.quit:
			return
		case msg := <-c.send:
			if err := c.writeBatch(msg); err != nil {
				c.fail(err, DropWriteTimeout)
				return
			}
		}
	}
}

// maxBatch bounds the messages written with one system call.
const maxBatch = 64

// writeBatch writes msg and up to maxBatch-1 messages queued behind it with
// one system call, within the write timeout: a burst of task events costs
// a client one write instead of one per message.
func (c *conn) writeBatch(msg []byte) error {
	c.nc.Cork()
	for n := min(len(c.send), maxBatch-1); ; n-- {
		if err := c.write(msg); err != nil {
			_ = c.nc.Uncork()
			return err
		}
		if n <= 0 {
			break
		}
		msg = <-c.send
	}
	return c.nc.Uncork()
}

// write sends one message within the write timeout.
func (c *conn) write(msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.hub.opts.WriteTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, msg)
}

// readLoop answers client messages until the connection ends. It reads
// without a context: the library would drop the connection without a close
// frame on cancellation, so close unblocks it instead.
func (c *conn) readLoop() {
	for {
		typ, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.stop(reasonGone)
			return
		}
		if typ != websocket.MessageText {
			c.enqueue(c.hub.errorReply(ErrCodeBadMessage, "binary messages are not supported", ""))
			continue
		}
		c.enqueue(c.hub.handle(c, b))
	}
}

// pingLoop pings the client every PingInterval and stops the connection when
// no pong comes back within WriteTimeout, or when the client's token expires.
func (c *conn) pingLoop() {
	t := time.NewTicker(c.hub.opts.PingInterval)
	defer t.Stop()
	var expired <-chan time.Time
	if exp := c.client.Expires; !exp.IsZero() {
		timer := time.NewTimer(time.Until(exp))
		defer timer.Stop()
		expired = timer.C
	}
	for {
		select {
		case <-c.quit:
			return
		case <-expired:
			c.stop(reasonExpired)
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.hub.opts.WriteTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			c.hub.log.Debug("push: client ping failed", "username", c.client.Username, "err", err)
			c.fail(err, DropPingTimeout)
			return
		}
	}
}

// enqueue offers msg to the send queue without blocking. A full queue stops
// the connection for overflow.
func (c *conn) enqueue(msg []byte) {
	select {
	case c.send <- msg:
	default:
		if c.stop(reasonOverflow) {
			c.hub.overflowed(c)
		}
	}
}

// offer queues msg only while the send queue is less than half full: a
// preview is skipped, not a reason to drop a client that is behind (the
// next one replaces it anyway).
func (c *conn) offer(msg []byte) {
	if len(c.send) < cap(c.send)/2 {
		c.enqueue(msg)
	}
}

// fail ends the connection after a failed write or ping. A timeout means the
// client is too slow (or gone without a word): it is reported as a drop.
func (c *conn) fail(err error, drop string) {
	// The deadline is the library's (a frame write, a ping) or the
	// socket's (a batch's write, see cork.Conn).
	late := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
	if c.stop(reasonGone) && late {
		c.hub.log.Warn("push: client too slow, closing", "username", c.client.Username, "reason", drop)
		c.hub.opts.OnDrop(drop)
	}
}

// stop ends the connection for reason; only the first call counts, and it
// reports whether it was the first.
func (c *conn) stop(reason closeReason) (first bool) {
	c.stopOnce.Do(func() {
		c.reason = reason
		close(c.quit)
		first = true
	})
	return first
}

// close closes the socket as the stop reason says, after the writer is done.
func (c *conn) close() {
	r := c.reason
	if r.abrupt {
		_ = c.ws.CloseNow()
		return
	}
	if err := c.ws.Close(r.code, r.text); err != nil {
		c.hub.log.Debug("push: close client", "username", c.client.Username, "err", err)
	}
}

// isUpgrade reports whether r asks for a WebSocket upgrade.
func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// originAllowed mirrors websocket.Accept's origin check so that a refusal is
// rendered in the contract's envelope: no Origin, the request's own host, or
// a host matching one of the patterns.
func originAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(r.Host, u.Host) {
		return true
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// writeError renders the contract's error envelope.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "error": code, "message": message})
}
