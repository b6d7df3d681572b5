package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// Event types of /ws, and Reconnected, which the stream adds after it
// connected again. The stream resumes after the last numbered message it
// delivered (Event.Seq), so a reconnection misses nothing the gateway
// logged unless a Resync follows; transient messages (progress, previews)
// sent while it was away are not sent again.
const (
	EventGlobalStatus   = "global_status"
	EventInstanceStatus = "instance_status"
	EventTaskStatus     = "task_status"
	EventTaskProgress   = "task_progress"
	EventTaskCompleted  = "task_completed"
	EventTaskFailed     = "task_failed"
	EventTaskCancelled  = "task_cancelled"
	EventTaskPreview    = "task_preview"
	EventReconnected    = "reconnected"
	// EventResync says the gateway no longer holds every event since the
	// stream's last one: read the state again over REST.
	EventResync = "resync"
)

// Event is one /ws message.
type Event struct {
	Type string `json:"type"`
	// Timestamp is Unix ms.
	Timestamp int64           `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	// Seq numbers the messages that report a change, 1 and up in the
	// gateway's event log; 0 for transient ones (progress, previews,
	// global_status).
	Seq int64 `json:"seq,omitempty"`
}

// TaskStatusData is the data of task_status.
type TaskStatusData struct {
	TaskID     string `json:"taskId"`
	Status     string `json:"status"`
	InstanceID string `json:"instanceId"`
	Progress   int    `json:"progress"`
	Attempts   int    `json:"attempts"`
}

// ProgressData is the data of task_progress: the percentage, the node
// running and its step counter (Value of Max).
type ProgressData struct {
	TaskID    string `json:"taskId"`
	Progress  int    `json:"progress"`
	NodeID    string `json:"nodeId,omitempty"`
	ClassType string `json:"classType,omitempty"`
	Title     string `json:"title,omitempty"`
	Value     int    `json:"value"`
	Max       int    `json:"max"`
}

// TaskEndData is the data of task_completed, task_failed and task_cancelled.
type TaskEndData struct {
	TaskID     string     `json:"taskId"`
	InstanceID string     `json:"instanceId"`
	Result     *Result    `json:"result,omitempty"`
	Error      *TaskError `json:"error,omitempty"`
}

// TaskID returns the task an event is about ("" for others).
func (e Event) TaskID() string {
	var d struct {
		TaskID string `json:"taskId"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.TaskID
}

// Status decodes task_status data.
func (e Event) Status() (TaskStatusData, error) {
	var d TaskStatusData
	return d, e.decode(EventTaskStatus, &d)
}

// Progress decodes task_progress data.
func (e Event) Progress() (ProgressData, error) {
	var d ProgressData
	return d, e.decode(EventTaskProgress, &d)
}

// End decodes the data of task_completed, task_failed or task_cancelled.
func (e Event) End() (TaskEndData, error) {
	var d TaskEndData
	if e.Type != EventTaskCompleted && e.Type != EventTaskFailed && e.Type != EventTaskCancelled {
		return d, fmt.Errorf("client: %s is not a task's end", e.Type)
	}
	return d, json.Unmarshal(e.Data, &d)
}

func (e Event) decode(typ string, v any) error {
	if e.Type != typ {
		return fmt.Errorf("client: event is %s, not %s", e.Type, typ)
	}
	return json.Unmarshal(e.Data, v)
}

// Stream is a /ws connection that reconnects: Events delivers every
// message, and Reconnected after each reconnection. It ends when its
// context ends or Close is called; Err then says why.
type Stream struct {
	c      *Client
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	// last is the Seq of the last numbered message delivered, where a
	// reconnection resumes; only run's goroutine touches it.
	last int64
}

// StreamOptions tune Subscribe.
type StreamOptions struct {
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults 250ms and 10s), doubled after each failure.
	MinBackoff, MaxBackoff time.Duration
}

// Subscribe connects to /ws and keeps reconnecting until ctx ends or
// Close. It returns once the first connection is up, or with the error
// of that first attempt (an *APIError 401 for a bad token).
func (c *Client) Subscribe(ctx context.Context, o StreamOptions) (*Stream, error) {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(10*time.Second, o.MinBackoff)
	}
	conn, err := c.dial(ctx, 0)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{c: c, events: make(chan Event, 256), cancel: cancel, done: make(chan struct{})}
	go s.run(ctx, conn, o)
	return s, nil
}

// Events delivers the messages; it is closed when the stream ends.
func (s *Stream) Events() <-chan Event { return s.events }

// Close ends the stream and waits for it.
func (s *Stream) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// Err is why the stream ended (nil after Close or its context's end).
func (s *Stream) Err() error {
	<-s.done
	return s.err
}

// dial connects to /ws, resuming after since when it is above 0.
func (c *Client) dial(ctx context.Context, since int64) (*websocket.Conn, error) {
	u := *c.base
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path += "/ws"
	if since > 0 {
		u.RawQuery = url.Values{"since": {strconv.FormatInt(since, 10)}}.Encode()
	}
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: h, HTTPClient: c.http})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			return nil, &APIError{Status: resp.StatusCode, Code: "ws_refused", Message: err.Error()}
		}
		return nil, fmt.Errorf("client: connect %s: %w", (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(), err)
	}
	conn.SetReadLimit(8 << 20)
	return conn, nil
}

func (s *Stream) run(ctx context.Context, conn *websocket.Conn, o StreamOptions) {
	defer close(s.done)
	defer close(s.events)
	backoff := o.MinBackoff
	for {
		s.read(ctx, conn)
		conn.CloseNow()
		if ctx.Err() != nil {
			return
		}
		for {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			var err error
			conn, err = s.c.dial(ctx, s.last)
			var ae *APIError
			if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
				s.err = err // the token is no longer good: reconnecting cannot help
				return
			}
			if err == nil {
				break
			}
			backoff = min(backoff*2, o.MaxBackoff)
		}
		backoff = o.MinBackoff
		select {
		case s.events <- Event{Type: EventReconnected, Timestamp: time.Now().UnixMilli()}:
		case <-ctx.Done():
			return
		}
	}
}

// read forwards messages until the connection fails or ctx ends.
func (s *Stream) read(ctx context.Context, conn *websocket.Conn) {
	for {
		_, raw, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var ev Event
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		select {
		case s.events <- ev:
			s.last = max(s.last, ev.Seq)
			if ev.Type == EventResync {
				// The gateway went on from its log's end: resume from there.
				var d struct{ Last int64 }
				if json.Unmarshal(ev.Data, &d) == nil {
					s.last = d.Last
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// WaitTask waits until task id ends and returns it, calling onProgress
// (when not nil) with each task_progress of it. It follows /ws and reads
// the task again after each reconnection, so an end missed while away is
// still seen. A failed or cancelled task is returned without error: check
// its Status.
func (c *Client) WaitTask(ctx context.Context, id string, onProgress func(ProgressData)) (*Task, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.Subscribe(ctx, StreamOptions{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	check := func() (*Task, bool, error) {
		t, err := c.GetTask(ctx, id)
		if err != nil {
			return nil, false, err
		}
		return t, Final(t.Status), nil
	}
	// Subscribed first, then read: an end between the two is not missed.
	if t, done, err := check(); err != nil || done {
		return t, err
	}
	for ev := range s.Events() {
		switch {
		case ev.Type == EventReconnected:
		case ev.TaskID() != id:
			continue
		case ev.Type == EventTaskProgress:
			if p, err := ev.Progress(); err == nil && onProgress != nil {
				onProgress(p)
			}
			continue
		case ev.Type != EventTaskCompleted && ev.Type != EventTaskFailed && ev.Type != EventTaskCancelled:
			continue
		}
		if t, done, err := check(); err != nil || done {
			return t, err
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("client: wait for task %s: %w", id, ctx.Err())
}
