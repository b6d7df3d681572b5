package comfysim

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
)

// TestIdleSocketStaysUp: a client that connects, reads its first frames and
// then only pings keeps its socket for as long as it likes. The instance
// used to leave a 30 s write deadline on the connection after each batch
// of frames, so the first pong written after it expired failed and the
// instance dropped the client about every 40 s (issue 11).
//
// The whole instance runs in a synctest bubble on an in-memory listener,
// so the minutes pass on the fake clock.
func TestIdleSocketStaysUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		s := New(Options{})
		s.name = "pipe"
		p := startProc(s, ln, nil)
		defer p.shutdown()

		hc := &http.Client{Transport: &http.Transport{DialContext: ln.dial}}
		defer hc.CloseIdleConnections()
		c, _, err := websocket.Dial(t.Context(), "ws://sim/ws?clientId=idle", &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		frames := make(chan []byte, 16)
		var wg sync.WaitGroup
		wg.Go(func() {
			defer close(frames)
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					return
				}
				frames <- b
			}
		})
		defer wg.Wait()
		defer c.CloseNow() // ends the reader before wg.Wait

		if b := <-frames; len(b) == 0 {
			t.Fatal("no status frame on connect")
		}
		for i := range 4 {
			time.Sleep(time.Minute) // fake time: the socket sits idle
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			err := c.Ping(ctx)
			cancel()
			if err != nil {
				t.Fatalf("ping after %d idle minutes: %v (the instance dropped the socket)", i+1, err)
			}
		}
		// Frames still flow after the idle time.
		p.mu.Lock()
		p.queueUpdated()
		p.mu.Unlock()
		select {
		case b, ok := <-frames:
			if !ok || len(b) == 0 {
				t.Fatal("socket closed instead of delivering a status frame")
			}
		case <-time.After(time.Minute):
			t.Fatal("no status frame after the idle time")
		}
	})
}

// pipeListener is a net.Listener whose connections are in-memory pipes, so
// an instance can serve inside a synctest bubble.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	srv, cli := net.Pipe()
	select {
	case l.conns <- srv:
		return cli, nil
	case <-l.closed:
		return nil, errors.New("listener closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
