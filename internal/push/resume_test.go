package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
)

// logHarness is a hub on a real event log (SQLite, keeping logSize events).
type logHarness struct {
	t   *testing.T
	st  *sqlitestore.Store
	srv *httptest.Server
}

func newLogHarness(t *testing.T, logSize int) *logHarness {
	return newLogHarnessOpts(t, logSize, Options{})
}

// newLogHarnessOpts is newLogHarness with a hub configured by opts.
func newLogHarnessOpts(t *testing.T, logSize int, opts Options) *logHarness {
	t.Helper()
	st, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "db"), sqlitestore.WithEventLogSize(logSize))
	if err != nil {
		t.Fatal(err)
	}
	hub := NewHub(st, opts)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, Client{Username: r.URL.Query().Get("user")})
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		st.Close()
	})
	return &logHarness{t: t, st: st, srv: srv}
}

// publishTask logs a task_completed of task n owned by owner.
func (h *logHarness) publishTask(n int, owner string) {
	h.t.Helper()
	data := fmt.Sprintf(`{"taskId":"t-%d","instanceId":"i","result":null}`, n)
	ev := event.Event{Type: event.TypeTaskCompleted, Data: []byte(data), TaskID: fmt.Sprintf("t-%d", n), Owner: owner, Time: int64(n)}
	if err := h.st.Publish(h.t.Context(), ev); err != nil {
		h.t.Fatal(err)
	}
}

// dial connects as user with ?since=since and returns a reader of its
// messages other than global_status.
func (h *logHarness) dial(user string, since int64) func() seqMessage {
	h.t.Helper()
	u := "ws" + strings.TrimPrefix(h.srv.URL, "http") + fmt.Sprintf("/ws?user=%s&since=%d", user, since)
	ws, _, err := websocket.Dial(h.t.Context(), u, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = ws.CloseNow() })
	return func() seqMessage {
		h.t.Helper()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			_, b, err := ws.Read(ctx)
			cancel()
			if err != nil {
				h.t.Fatalf("read: %v", err)
			}
			var m seqMessage
			if err := json.Unmarshal(b, &m); err != nil {
				h.t.Fatalf("decode %q: %v", b, err)
			}
			if m.Type != TypeGlobalStatus {
				return m
			}
		}
	}
}

// seqMessage is a message with its seq and task id.
type seqMessage struct {
	Type string
	Seq  int64
	Data struct {
		TaskID     string
		InstanceID string
		Since      int64
		Last       int64
	}
}

// TestResumeReplaysOnceInOrder: a client resuming gets the events after
// since it may see, in order, then live ones, none twice.
func TestResumeReplaysOnceInOrder(t *testing.T) {
	h := newLogHarness(t, 1000)
	for n := 1; n <= 20; n++ {
		owner := "alice"
		if n%2 == 0 {
			owner = "bob"
		}
		h.publishTask(n, owner)
	}
	next := h.dial("alice", 10)
	for _, want := range []int{11, 13, 15, 17, 19} {
		if m := next(); m.Type != event.TypeTaskCompleted || m.Seq != int64(want) || m.Data.TaskID != fmt.Sprintf("t-%d", want) {
			t.Fatalf("replayed %+v, want task_completed of t-%d numbered %d", m, want, want)
		}
	}
	h.publishTask(21, "alice")
	if m := next(); m.Seq != 21 || m.Data.TaskID != "t-21" {
		t.Fatalf("live after the replay: %+v, want t-21 numbered 21", m)
	}
}

// TestResumeGone: a client resuming from a position the log no longer
// holds gets resync, then live events.
func TestResumeGone(t *testing.T) {
	h := newLogHarness(t, 10)
	for n := 1; n <= 200; n++ {
		h.publishTask(n, "alice")
	}
	next := h.dial("alice", 5)
	if m := next(); m.Type != TypeResync || m.Data.Since != 5 || m.Data.Last != 200 {
		t.Fatalf("got %+v, want resync since 5, last 200", m)
	}
	h.publishTask(201, "alice")
	if m := next(); m.Seq != 201 {
		t.Fatalf("live after the resync: %+v, want number 201", m)
	}
}

// TestEventDataLiveAndReplayed: Options.EventData makes what clients get
// of an event, both live and replayed to a resuming client (the gateway
// renders task_completed's file URLs for itself there).
func TestEventDataLiveAndReplayed(t *testing.T) {
	h := newLogHarnessOpts(t, 1000, Options{EventData: func(ev event.Event) json.RawMessage {
		if ev.Type != event.TypeTaskCompleted {
			return ev.Data
		}
		return bytes.Replace(ev.Data, []byte(`"instanceId":"i"`), []byte(`"instanceId":"here"`), 1)
	}})
	h.publishTask(1, "alice")
	next := h.dial("alice", 0)
	if m := next(); m.Seq != 1 || m.Data.InstanceID != "here" {
		t.Fatalf("replayed %+v, want t-1 with the data of EventData", m)
	}
	h.publishTask(2, "alice")
	if m := next(); m.Seq != 2 || m.Data.InstanceID != "here" {
		t.Fatalf("live %+v, want t-2 with the data of EventData", m)
	}
}
