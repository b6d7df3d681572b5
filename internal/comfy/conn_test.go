package comfy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/coder/websocket"
)

// dialReplay starts a /ws server that replays frames and then reads until
// the client closes, and dials it with client id id.
func dialReplay(t *testing.T, id string, frames []frame) (*wsServer, *Conn) {
	t.Helper()
	srv := newWSServer(t, func(ctx context.Context, _ int, c *websocket.Conn) {
		c.SetReadLimit(-1)
		replay(ctx, t, c, frames)
		drain(ctx, c)
	})
	ctx, cancel := context.WithCancel(t.Context())
	conn, err := New(srv.srv.URL, id, srv.srv.Client()).Dial(ctx)
	cancel() // bounds the handshake only
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return srv, conn
}

func TestDialAndNextReplayS02(t *testing.T) {
	t.Parallel()
	frames := loadFrames(t, "s02_basic_workflow", "ws")
	const id = "probe-s02-3bd744a3"
	srv, conn := dialReplay(t, id, frames)

	for i, fr := range frames {
		ev, err := conn.Next(t.Context())
		if err != nil {
			t.Fatalf("frame %d: Next: %v", i, err)
		}
		checkDecoded(t, i, fr.JSON, ev)
	}
	srv.checkHandshakes(t, id)
}

// checkDecoded compares an event with the recorded frame it came from.
func checkDecoded(t *testing.T, i int, raw json.RawMessage, ev Event) {
	t.Helper()
	var want struct {
		Type string `json:"type"`
		Data struct {
			PromptID string          `json:"prompt_id"`
			Node     json.RawMessage `json:"node"`
			SID      string          `json:"sid"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	d := want.Data
	nodeNull := string(d.Node) == "null"
	if ev.Type != want.Type || ev.PromptID != d.PromptID || ev.SID != d.SID || ev.NodeNull != nodeNull {
		t.Errorf("frame %d: got %+v, want %s", i, ev, raw)
	}
	var wantData map[string]json.RawMessage
	_ = json.Unmarshal(raw, &wantData)
	if !jsonEqual(t, ev.Data, wantData["data"]) {
		t.Errorf("frame %d: Data = %s, want %s", i, ev.Data, wantData["data"])
	}
}

func TestNextBinaryFrames(t *testing.T) {
	t.Parallel()
	for _, ws := range []string{"ws_legacy", "ws_preview_metadata"} {
		t.Run(ws, func(t *testing.T) {
			t.Parallel()
			frames := loadFrames(t, "s02b_ws_binary_frames", ws)
			_, conn := dialReplay(t, "gw-test", frames)
			binaries := 0
			for i, fr := range frames {
				ev, err := conn.Next(t.Context())
				if err != nil {
					t.Fatalf("frame %d: Next: %v", i, err)
				}
				if fr.Frame == "text" {
					checkDecoded(t, i, fr.JSON, ev)
					continue
				}
				binaries++
				checkBinary(t, fr, ev)
			}
			if binaries != 2 {
				t.Errorf("got %d binary frames, want 2", binaries)
			}
		})
	}
}

func checkBinary(t *testing.T, fr frame, ev Event) {
	t.Helper()
	if ev.Type != EventBinary || ev.BinaryType != fr.EventType {
		t.Errorf("got %+v, want binary type %d", ev, fr.EventType)
	}
	if fr.EventType == BinaryPreviewImageWithMetadata && (ev.PromptID != "924fc275-9e8d-46ef-9fca-43622fc38729" || ev.Node != "2") {
		t.Errorf("type 4 metadata not decoded: %+v", ev)
	}
}

func TestNextLargeBinaryAndMalformedFrames(t *testing.T) {
	t.Parallel()
	big := make([]byte, 3<<20) // a full-size PNG from SaveImageWebsocket, far above the default 32 KiB limit
	big[3] = 1
	srv := newWSServer(t, func(ctx context.Context, _ int, c *websocket.Conn) {
		for _, m := range []struct {
			typ websocket.MessageType
			b   []byte
		}{
			{websocket.MessageBinary, big},
			{websocket.MessageText, []byte(`not json`)},
			{websocket.MessageBinary, []byte{0, 1}},
			{websocket.MessageText, []byte(`{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 4}}}}`)},
		} {
			if err := c.Write(ctx, m.typ, m.b); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
		drain(ctx, c)
	})
	conn, err := New(srv.srv.URL, "gw-test", srv.srv.Client()).Dial(t.Context())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()

	if ev, err := conn.Next(t.Context()); err != nil || ev.BinaryType != BinaryPreviewImage {
		t.Fatalf("big binary: got %+v, %v", ev, err)
	}
	for i := range 2 {
		if _, err := conn.Next(t.Context()); !errors.Is(err, ErrMalformedFrame) {
			t.Fatalf("malformed frame %d: got %v, want ErrMalformedFrame", i, err)
		}
	}
	if ev, err := conn.Next(t.Context()); err != nil || ev.QueueRemaining != 4 {
		t.Fatalf("after malformed frames: got %+v, %v", ev, err)
	}
}

func TestNextAfterServerCloses(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, func(ctx context.Context, _ int, c *websocket.Conn) {
		_ = c.Close(websocket.StatusGoingAway, "restart")
	})
	conn, err := New(srv.srv.URL, "gw-test", srv.srv.Client()).Dial(t.Context())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	_, err = conn.Next(t.Context())
	if err == nil || errors.Is(err, ErrMalformedFrame) || websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("got %v, want a close error with status going away", err)
	}
}

func TestDialRefused(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	if _, err := c.Dial(t.Context()); err == nil {
		t.Fatal("Dial: got nil error for a 403")
	}
}
