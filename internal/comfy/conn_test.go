package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
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

// TestNextBinaryFrames replays the recorded SaveImageWebsocket run of both
// framings: every image arrives with its bytes, its format and the prompt
// and node it belongs to (type 1 from the executing before it).
func TestNextBinaryFrames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ ws, prompt string }{
		{"ws_legacy", "79271c0a-16fc-4e1b-94ad-ecbc4ee0121d"},
		{"ws_preview_metadata", "924fc275-9e8d-46ef-9fca-43622fc38729"},
	} {
		t.Run(tt.ws, func(t *testing.T) {
			t.Parallel()
			frames := loadFrames(t, "s02b_ws_binary_frames", tt.ws)
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
				checkBinary(t, fr, ev, tt.prompt)
			}
			if binaries != 2 {
				t.Errorf("got %d binary frames, want 2", binaries)
			}
		})
	}
}

func checkBinary(t *testing.T, fr frame, ev Event, prompt string) {
	t.Helper()
	_, b := fr.payload(t)
	start := 8
	if fr.EventType == BinaryPreviewImageWithMetadata {
		start += len(fr.Metadata)
	}
	want := Event{
		Type: EventBinary, BinaryType: fr.EventType, PromptID: prompt, Node: "2",
		Image: b[start:], ImageFormat: "png", ImageSize: len(b) - start,
	}
	if fr.EventType == BinaryPreviewImageWithMetadata {
		want.DisplayNode, want.Data = "2", fr.Metadata
	}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("binary frame (-want +got):\n%s", diff)
	}
}

func TestNextLargeBinaryAndMalformedFrames(t *testing.T) {
	t.Parallel()
	big := make([]byte, 8+(1<<20)) // a full-size PNG from SaveImageWebsocket, far above the library's default 32 KiB limit
	big[3], big[7] = 1, 2
	huge := make([]byte, 8+(2<<20)) // above the limit this test sets
	huge[3], huge[7] = 1, 2
	srv := newWSServer(t, func(ctx context.Context, _ int, c *websocket.Conn) {
		for _, m := range []struct {
			typ websocket.MessageType
			b   []byte
		}{
			{websocket.MessageBinary, big},
			{websocket.MessageBinary, huge},
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
	conn.imageLimit = 3 << 19

	if ev, err := conn.Next(t.Context()); err != nil || ev.BinaryType != BinaryPreviewImage || !bytes.Equal(ev.Image, big[8:]) {
		t.Fatalf("big binary: got type %d, %d image bytes, %v; want type 1 and %d bytes", ev.BinaryType, len(ev.Image), err, len(big)-8)
	}
	if ev, err := conn.Next(t.Context()); err != nil || ev.Image != nil || ev.ImageSize != len(huge)-8 || ev.ImageFormat != "png" {
		t.Fatalf("binary above the limit: got %d image bytes, size %d, format %q, %v; want none, size %d, png", len(ev.Image), ev.ImageSize, ev.ImageFormat, err, len(huge)-8)
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

// TestDialAsksForPreviewMetadata: the first message on a new connection
// negotiates type-4 previews, which name their prompt.
func TestDialAsksForPreviewMetadata(t *testing.T) {
	t.Parallel()
	got := make(chan []byte, 1)
	srv := newWSServer(t, func(ctx context.Context, _ int, c *websocket.Conn) {
		_, b, err := c.Read(ctx)
		if err == nil {
			got <- b
		}
		drain(ctx, c)
	})
	conn, err := New(srv.srv.URL, "gw-test", srv.srv.Client()).Dial(t.Context())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	want := `{"type": "feature_flags", "data": {"supports_preview_metadata": true}}`
	if b := recv(t, got, "the first client message"); !jsonEqual(t, b, []byte(want)) {
		t.Errorf("first message = %s, want %s", b, want)
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
