package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/comfyfleet/comfyfleet/client"
)

// TestStreamResumesAfterResync: after a resync the stream resumes from the
// log's end the gateway named, not from its old position again.
func TestStreamResumesAfterResync(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sinces []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sinces = append(sinces, r.URL.Query().Get("since"))
		n := len(sinces)
		mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		switch n {
		case 1: // a numbered message, then the connection is lost
			_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"task_status","timestamp":1,"seq":7,"data":{"taskId":"a"}}`))
		case 2: // the gateway no longer has what follows 7: resync, then lost again
			_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"resync","timestamp":2,"data":{"since":7,"last":40}}`))
		default: // stay until the client leaves
			_, _, _ = c.Read(ctx)
		}
	}))
	defer srv.Close()
	c, err := client.New(srv.URL, client.WithToken("t"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, client.StreamOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reconnects := 0
	for ev := range s.Events() {
		if ev.Type == client.EventReconnected {
			if reconnects++; reconnects == 2 {
				break
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"", "7", "40"}
	if len(sinces) < 3 || sinces[0] != want[0] || sinces[1] != want[1] || sinces[2] != want[2] {
		t.Errorf("the connections asked since %q, want %q", sinces, want)
	}
}
