// Package cork lets a WebSocket server hand several messages to the kernel
// in one write. coder/websocket flushes every message to its connection;
// behind a Conn, while corked, the bytes collect in memory and Uncork sends
// them together. A writer with a queue corks, writes what is queued, and
// uncorks: one system call for the lot instead of one per message.
package cork

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// Conn is a net.Conn whose writes can be held back and sent together.
type Conn struct {
	net.Conn
	timeout time.Duration

	// mu guards corked and buf.
	mu     sync.Mutex
	corked bool
	buf    []byte
}

// Write implements net.Conn: while corked it only collects p; otherwise
// (a pong or a close frame written by the library) it writes at once.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.write(p)
}

// Cork holds back writes until Uncork.
func (c *Conn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork writes what collected while corked, within the write timeout.
func (c *Conn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.write(c.buf)
	if cap(c.buf) > maxKeep {
		c.buf = nil // a burst's buffer is not kept for the connection's life
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// maxKeep is the largest buffer kept between batches.
const maxKeep = 64 << 10

// write writes p within the timeout. The deadline is cleared afterwards:
// left in place it would fail the first write after a quiet spell, such as
// the pong to a ping, and drop an idle peer. Caller holds mu.
func (c *Conn) write(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		defer c.Conn.SetWriteDeadline(time.Time{})
	}
	return c.Conn.Write(p)
}

// Writer is an http.ResponseWriter whose hijacked connection is a Conn:
// pass it to websocket.Accept, then take the Conn.
type Writer struct {
	http.ResponseWriter
	// Timeout bounds each system-call write of the hijacked connection; a
	// peer that stops reading fails its writes. Zero: no bound.
	Timeout time.Duration

	conn *Conn
}

// Hijack implements http.Hijacker.
func (w *Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &Conn{Conn: nc, timeout: w.Timeout}
	return w.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(w.conn, 4096)), nil
}

// Conn is the hijacked connection; nil before a successful Hijack.
func (w *Writer) Conn() *Conn { return w.conn }
