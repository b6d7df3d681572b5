package bench

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// message is the part of a /ws message the bench reads.
type message struct {
	Type      string `json:"type"`
	Timestamp int64  `json:"timestamp"`
	Data      struct {
		TaskID string `json:"taskId"`
	} `json:"data"`
}

// stream is one /ws connection; each message goes to a handler called on
// the stream's reading goroutine with the time it was read.
type stream struct {
	conn *websocket.Conn
	done chan struct{}
	// err is why reading stopped; set before done closes.
	err error
}

// dialEvents opens /ws as a's user and calls on for every message.
func (a *api) dialEvents(ctx context.Context, on func(m *message, at time.Time)) (*stream, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(a.base, "http") + "/ws?token=" + a.token
	conn, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: a.e.hc})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(64 << 20)
	s := &stream{conn: conn, done: make(chan struct{})}
	go s.read(on)
	return s, nil
}

func (s *stream) read(on func(m *message, at time.Time)) {
	defer close(s.done)
	for {
		_, b, err := s.conn.Read(context.Background())
		at := time.Now()
		if err != nil {
			s.err = err
			return
		}
		var m message
		if err := json.Unmarshal(b, &m); err != nil {
			s.err = err
			return
		}
		on(&m, at)
	}
}

// dropped reports whether the gateway closed the stream because the client
// fell behind (its send queue overflowed).
func (s *stream) dropped() bool {
	select {
	case <-s.done:
		return websocket.CloseStatus(s.err) == websocket.StatusTryAgainLater
	default:
		return false
	}
}

// close closes the connection and waits for the reader.
func (s *stream) close() {
	_ = s.conn.Close(websocket.StatusNormalClosure, "")
	<-s.done
}

// tracker counts task outcomes seen on /ws until a number of them is reached.
type tracker struct {
	// mu guards the fields below.
	mu        sync.Mutex
	want      int
	completed int
	failed    int
	first     time.Time
	last      time.Time
	at        map[string]time.Time // completion time per task, when keep is set
	reached   chan struct{}
}

// newTracker waits for want outcomes; with keep, it records each task's
// completion time.
func newTracker(want int, keep bool) *tracker {
	t := &tracker{want: want, reached: make(chan struct{})}
	if keep {
		t.at = make(map[string]time.Time, want)
	}
	return t
}

// on is a stream handler.
func (t *tracker) on(m *message, at time.Time) {
	if m.Type != "task_completed" && m.Type != "task_failed" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m.Type == "task_completed" {
		t.completed++
	} else {
		t.failed++
	}
	if t.first.IsZero() {
		t.first = at
	}
	t.last = at
	if t.at != nil {
		t.at[m.Data.TaskID] = at
	}
	if t.completed+t.failed == t.want {
		close(t.reached)
	}
}

// counts returns completed, failed and the time of the last outcome.
func (t *tracker) counts() (completed, failed int, last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.completed, t.failed, t.last
}

// errStreamEnded is returned by wait when the stream closed early.
var errStreamEnded = errors.New("event stream closed before every outcome arrived")

// wait blocks until every outcome arrived, ended is closed (the stream
// that feeds the tracker ended), the limit passes or ctx ends.
func (t *tracker) wait(ctx context.Context, ended <-chan struct{}, limit time.Duration) error {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-t.reached:
		return nil
	case <-ended:
		select {
		case <-t.reached:
			return nil
		default:
		}
		return errStreamEnded
	case <-timer.C:
		c, f, _ := t.counts()
		return errors.New("timed out: " + itoa(c+f) + " of " + itoa(t.want) + " outcomes seen")
	case <-ctx.Done():
		return ctx.Err()
	}
}
