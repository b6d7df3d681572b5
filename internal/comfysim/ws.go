package comfysim

import (
	"context"
	"encoding/binary"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// The WebSocket side of PromptServer (server.py websocket_handler, send,
// send_sync). Each socket has its own bounded FIFO and writer; frames are
// encoded once and shared by every socket they go to.

type wsFrame struct {
	binary bool
	data   []byte
}

type wsConn struct {
	sid         string
	c           *websocket.Conn
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
func (w *wsConn) kill() {
	w.once.Do(func() {
		close(w.done)
		w.c.CloseNow()
	})
}

func (w *wsConn) writeLoop() {
	for {
		select {
		case f := <-w.out:
			typ := websocket.MessageText
			if f.binary {
				typ = websocket.MessageBinary
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := w.c.Write(ctx, typ, f.data)
			cancel()
			if err != nil {
				w.kill()
				return
			}
		case <-w.done:
			return
		}
	}
}

// serveWS is GET /ws?clientId=.
func (p *proc) serveWS(w http.ResponseWriter, r *http.Request) error {
	sid := query(r).Get("clientId")
	if sid == "" {
		sid = uuidHex()
	}
	// The origin check already ran in the middleware, as in aiohttp.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return nil // Accept has answered the client
	}
	c.SetReadLimit(4 << 20)
	conn := &wsConn{sid: sid, c: c, out: make(chan wsFrame, p.sim.opts.WSQueueSize), done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		conn.writeLoop()
	}()
	p.register(conn)
	p.readLoop(conn)
	p.unregister(conn)
	conn.kill()
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
	if conn.dropped.Load() {
		return // a simulated network cut already removed it
	}
	if cur := p.sockets[conn.sid]; cur == conn || (cur != nil && !p.sim.opts.SafeReconnect) {
		delete(p.sockets, conn.sid)
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
		if t, _ := msg.str("type"); t == "feature_flags" {
			flags, _ := msg.m["data"].(*obj)
			conn.previewMeta.Store(flags != nil && flags.m["supports_preview_metadata"] == true)
			conn.enqueue(textFrame("feature_flags", p.sim.features()))
		}
	}
}

func textFrame(event string, data any) wsFrame {
	return wsFrame{data: encodePy(newObj("type", event, "data", data))}
}

// sendSync is PromptServer.send_sync: to the socket of sid, or to every
// socket when sid is nil. Messages for an absent sid are dropped.
func (p *proc) sendSync(event string, data any, sid *string) {
	if p.sim.k.consumeWSDrop(event) {
		p.dropSockets()
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

// dropSockets cuts every WebSocket at once.
func (p *proc) dropSockets() {
	p.hmu.Lock()
	conns := make([]*wsConn, 0, len(p.sockets))
	for sid, c := range p.sockets {
		c.dropped.Store(true)
		conns = append(conns, c)
		delete(p.sockets, sid)
	}
	p.hmu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}

// socketCount is the number of registered sockets.
func (p *proc) socketCount() int {
	p.hmu.Lock()
	defer p.hmu.Unlock()
	return len(p.sockets)
}
