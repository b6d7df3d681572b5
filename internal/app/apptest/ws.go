package apptest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Message is one /ws message.
type Message struct {
	Type      string          `json:"type"`
	Timestamp int64           `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	RequestID string          `json:"requestId"`
	// Seq numbers a logged event; 0 for others.
	Seq int64 `json:"seq"`
}

// WS is a test client of the gateway's /ws.
type WS struct {
	t      testing.TB
	conn   *websocket.Conn
	msgs   chan Message
	cancel context.CancelFunc
}

// DialWS connects to /ws with token; it closes at test cleanup.
func (e *Env) DialWS(token string) *WS {
	e.T.Helper()
	return e.DialWSQuery(token, "")
}

// DialWSSince connects to /ws with token, resuming after the event
// numbered since.
func (e *Env) DialWSSince(token string, since int64) *WS {
	e.T.Helper()
	return e.DialWSQuery(token, fmt.Sprintf("since=%d", since))
}

// DialWSQuery connects to /ws with token and the query query ("" for none).
func (e *Env) DialWSQuery(token, query string) *WS {
	e.T.Helper()
	c, resp, err := e.dialWSQuery(token, query)
	if err != nil {
		e.T.Fatalf("dial /ws: %v (status %v)", err, statusOf(resp))
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &WS{t: e.T, conn: c, msgs: make(chan Message, 100000), cancel: cancel}
	c.SetReadLimit(16 << 20)
	go w.read(ctx)
	e.T.Cleanup(w.Close)
	return w
}

func (e *Env) dialWS(token string) (*websocket.Conn, *http.Response, error) {
	return e.dialWSQuery(token, "")
}

func (e *Env) dialWSQuery(token, query string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var q []string
	if token != "" {
		q = append(q, "token="+token)
	}
	if query != "" {
		q = append(q, query)
	}
	url := "ws" + strings.TrimPrefix(e.URL(), "http") + "/ws"
	if len(q) > 0 {
		url += "?" + strings.Join(q, "&")
	}
	return websocket.Dial(ctx, url, nil)
}

// DialWSStatus tries to connect and returns the HTTP status of a refused upgrade.
func (e *Env) DialWSStatus(token string) int {
	c, resp, err := e.dialWS(token)
	if err == nil {
		c.Close(websocket.StatusNormalClosure, "")
		return http.StatusSwitchingProtocols
	}
	return statusOf(resp)
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

func (w *WS) read(ctx context.Context) {
	defer close(w.msgs)
	for {
		_, data, err := w.conn.Read(ctx)
		if err != nil {
			return
		}
		var m Message
		if json.Unmarshal(data, &m) == nil {
			w.msgs <- m
		}
	}
}

// Send writes one client message.
func (w *WS) Send(v any) {
	w.t.Helper()
	raw, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.conn.Write(ctx, websocket.MessageText, raw); err != nil {
		w.t.Fatalf("ws write: %v", err)
	}
}

// WaitFor returns the first message for which match is true, failing after timeout.
func (w *WS) WaitFor(timeout time.Duration, what string, match func(Message) bool) Message {
	w.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-w.msgs:
			if !ok {
				w.t.Fatalf("ws closed while waiting for %s", what)
			}
			if match(m) {
				return m
			}
		case <-timer.C:
			w.t.Fatalf("timed out after %v waiting for ws %s", timeout, what)
		}
	}
}

// WaitClosed waits until the server closes the connection, failing after
// timeout; messages before the close are skipped.
func (w *WS) WaitClosed(timeout time.Duration, what string) {
	w.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-w.msgs:
			if !ok {
				return
			}
		case <-timer.C:
			w.t.Fatalf("timed out after %v waiting for ws close: %s", timeout, what)
		}
	}
}

// Close ends the connection.
func (w *WS) Close() {
	w.cancel()
	w.conn.Close(websocket.StatusNormalClosure, "")
}
