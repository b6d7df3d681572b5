package comfysim

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// corkConn lets a socket's writer hand several frames to the kernel in one
// write: coder/websocket flushes every message, so while corked the bytes
// collect here and uncork sends them together. With a dozen frames per
// prompt this is most of the simulator's per-prompt system-call cost.
type corkConn struct {
	net.Conn
	// mu guards corked and buf.
	mu     sync.Mutex
	corked bool
	buf    []byte
}

// writeTimeout bounds one system-call write to a socket: a client that
// stops reading is dropped, as aiohttp's transport would eventually do.
const writeTimeout = 30 * time.Second

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.write(p) // a pong or a close frame, written by the library
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what collected while corked.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// write writes p within writeTimeout. The deadline is cleared afterwards:
// left in place it would fail the first write after a quiet spell, such as
// the pong to a ping, and drop an idle client. Caller holds mu.
func (c *corkConn) write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := c.Conn.Write(p)
	c.Conn.SetWriteDeadline(time.Time{})
	return n, err
}

// corkingWriter makes websocket.Accept hijack a corkConn.
type corkingWriter struct {
	http.ResponseWriter
	conn *corkConn
}

func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc}
	return w.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(w.conn, 4096)), nil
}
