package comfysim

import (
	"context"
	"encoding/binary"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/comfyfleet/comfyfleet/internal/cork"
	"github.com/google/uuid"
)

// The WebSocket side of PromptServer (server.py websocket_handler, send,
// send_sync). Each socket has its own bounded FIFO and writer; frames are
// encoded once and shared by every socket they go to.

type wsFrame struct {
	binary bool
	cut    bool // not a frame: cut the connection once what precedes is written
	data   []byte
}

type wsConn struct {
	sid         string
	mu          sync.Mutex // guards c, set once the handshake is done
	c           *websocket.Conn
	nc          *cork.Conn // the connection under c
	out         chan wsFrame
	done        chan struct{}
	once        sync.Once
	previewMeta atomic.Bool // negotiated supports_preview_metadata
	dropped     atomic.Bool // already unregistered by dropSockets
}

// enqueue queues a frame; a socket too far behind is closed rather than
// allowed to stall the instance.
func (w *wsConn) enqueue(f wsFrame) {
	select {
	case w.out <- f:
	case <-w.done:
	default:
		w.kill()
	}
}

// kill drops the connection without a close handshake, like a network cut.
// Before the handshake completed there is no connection yet: attach closes it.
func (w *wsConn) kill() {
	w.once.Do(func() {
		close(w.done)
		if c := w.conn(); c != nil {
			c.CloseNow()
		}
	})
}

func (w *wsConn) conn() *websocket.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c
}

// attach hands the accepted connection over; false if the socket was
// already cut while the handshake ran.
func (w *wsConn) attach(c *websocket.Conn) bool {
	w.mu.Lock()
	w.c = c
	w.mu.Unlock()
	select {
	case <-w.done:
		c.CloseNow()
		return false
	default:
		return true
	}
}

func (w *wsConn) writeLoop() {
	for {
		select {
		case f := <-w.out:
			if !w.writeBatch(f) {
				w.kill()
				return
			}
		case <-w.done:
			return
		}
	}
}

// writeBatch writes f and the frames queued behind it with one system call.
// It reports false when the connection must die (an error or a cut).
func (w *wsConn) writeBatch(f wsFrame) bool {
	w.nc.Cork()
	for n := len(w.out); ; n-- {
		if f.cut {
			w.nc.Uncork() // what preceded the cut still goes out
			return false
		}
		if w.write(f) != nil {
			return false
		}
		if n <= 0 {
			break
		}
		f = <-w.out
	}
	return w.nc.Uncork() == nil
}

// write hands one frame to the corked connection, which never blocks: the
// system call, and its deadline, happen in uncork.
func (w *wsConn) write(f wsFrame) error {
	typ := websocket.MessageText
	if f.binary {
		typ = websocket.MessageBinary
	}
	return w.c.Write(context.Background(), typ, f.data)
}

// serveWS is GET /ws?clientId=. The socket is registered, with its first
// frames queued, before the handshake answer goes out: as in aiohttp, a
// client that submits right after connecting misses nothing.
func (p *proc) serveWS(w http.ResponseWriter, r *http.Request) error {
	sid := query(r).Get("clientId")
	if sid == "" {
		sid = uuidHex()
	}
	if !isWebSocket(r) {
		websocket.Accept(w, r, nil) // answers the bad request
		return nil
	}
	conn := &wsConn{sid: sid, out: make(chan wsFrame, p.sim.opts.WSQueueSize), done: make(chan struct{})}
	p.register(conn)
	defer p.unregister(conn)
	defer conn.kill()
	// The origin check already ran in the middleware, as in aiohttp.
	cw := &cork.Writer{ResponseWriter: w, Timeout: writeTimeout}
	c, err := websocket.Accept(cw, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil || !conn.attach(c) {
		return nil // Accept has answered the client
	}
	conn.nc = cw.Conn()
	c.SetReadLimit(4 << 20)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		conn.writeLoop()
	}()
	p.readLoop(conn)
	return nil
}

func uuidHex() string {
	u := uuid.New()
	const hex = "0123456789abcdef"
	b := make([]byte, 32)
	for i, x := range u {
		b[2*i], b[2*i+1] = hex[x>>4], hex[x&0xf]
	}
	return string(b)
}

// register adds the socket and queues its first frames: status with sid,
// then, when this client's prompt is mid-node, the reconnect executing.
func (p *proc) register(conn *wsConn) {
	p.mu.Lock()
	info := p.queueInfo()
	p.hmu.Lock()
	p.mu.Unlock()
	defer p.hmu.Unlock()
	p.sockets[conn.sid] = conn
	p.live++
	p.hubChanged()
	conn.enqueue(textFrame("status", newObj("status", info, "sid", conn.sid)))
	if p.clientID != nil && *p.clientID == conn.sid && p.lastNode != nil {
		conn.enqueue(textFrame("executing", newObj("node", *p.lastNode)))
	}
}

// unregister is the handler's finally: sockets.pop(sid), which also evicts a
// newer socket registered under the same id unless SafeReconnect is set.
func (p *proc) unregister(conn *wsConn) {
	p.hmu.Lock()
	defer p.hmu.Unlock()
	p.live--
	defer p.hubChanged()
	if conn.dropped.Load() {
		return // a simulated network cut already removed it
	}
	if cur := p.sockets[conn.sid]; cur == conn || (cur != nil && !p.sim.opts.SafeReconnect) {
		delete(p.sockets, conn.sid)
	}
}

// hubChanged wakes whoever waits for the set of sockets to change. Caller holds hmu.
func (p *proc) hubChanged() {
	close(p.hubCh)
	p.hubCh = make(chan struct{})
}

// waitHub blocks until cond, called with hmu held, holds. Tests use it to
// see sockets come and go without polling.
func (p *proc) waitHub(ctx context.Context, cond func() bool) error {
	for {
		p.hmu.Lock()
		ok, ch := cond(), p.hubCh
		p.hmu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readLoop ignores client frames except a first feature_flags message.
func (p *proc) readLoop(conn *wsConn) {
	first := true
	for {
		typ, data, err := conn.c.Read(p.ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText || !first {
			continue
		}
		v, err := parsePy(data)
		msg, isObj := v.(*obj)
		if err != nil || !isObj {
			continue // json.loads failed or .get raised: the flag stays set
		}
		first = false
		if p.sim.opts.NoPreviewMetadata {
			continue // before v0.3.45 client messages were ignored
		}
		if t, _ := msg.str("type"); t == "feature_flags" {
			flags, _ := msg.at("data").(*obj)
			conn.previewMeta.Store(flags != nil && flags.at("supports_preview_metadata") == true)
			conn.enqueue(textFrame("feature_flags", p.sim.features()))
		}
	}
}

// textFrame encodes {"type": event, "data": data}.
func textFrame(event string, data any) wsFrame {
	b := make([]byte, 0, 256)
	b = append(b, `{"type": `...)
	b = appendPyString(b, event)
	b = append(b, `, "data": `...)
	b = appendPy(b, data)
	return wsFrame{data: append(b, '}')}
}

// sendSync is PromptServer.send_sync: to the socket of sid, or to every
// socket when sid is nil. Messages for an absent sid are dropped.
func (p *proc) sendSync(event string, data any, sid *string) {
	if p.sim.k.consumeWSDrop(event) {
		p.dropSockets(true)
		return
	}
	p.deliver(textFrame(event, data), sid)
}

// sendBinary sends a binary event: a big-endian u32 type, then the payload.
func (p *proc) sendBinary(typ uint32, payload []byte, sid *string) {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(payload)), typ)
	p.deliver(wsFrame{binary: true, data: append(b, payload...)}, sid)
}

func (p *proc) deliver(f wsFrame, sid *string) {
	p.hmu.Lock()
	defer p.hmu.Unlock()
	if sid == nil {
		for _, c := range p.sockets {
			c.enqueue(f)
		}
		return
	}
	if c := p.sockets[*sid]; c != nil {
		c.enqueue(f)
	}
}

// supportsPreviewMetadata is feature_flags.supports_feature for sid.
func (p *proc) supportsPreviewMetadata(sid *string) bool {
	if sid == nil {
		return false
	}
	p.hmu.Lock()
	defer p.hmu.Unlock()
	c := p.sockets[*sid]
	return c != nil && c.previewMeta.Load()
}

// dropSockets cuts every WebSocket. With flush, frames already queued still
// reach the client first (a cut "now" as the client sees it); without, the
// connections die at once (the process is gone).
func (p *proc) dropSockets(flush bool) {
	p.hmu.Lock()
	conns := make([]*wsConn, 0, len(p.sockets))
	for sid, c := range p.sockets {
		c.dropped.Store(true)
		conns = append(conns, c)
		delete(p.sockets, sid)
	}
	p.hubChanged()
	p.hmu.Unlock()
	for _, c := range conns {
		if flush {
			c.enqueue(wsFrame{cut: true})
		} else {
			c.kill()
		}
	}
}

// writeTimeout bounds one system-call write to a socket: a client that
// stops reading is dropped, as aiohttp's transport would eventually do.
const writeTimeout = 30 * time.Second
