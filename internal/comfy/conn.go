package comfy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/coder/websocket"
)

// maxFrame is the WebSocket read limit; a larger frame ends the connection.
// It is well above MaxImage so that an oversized image costs only bandwidth.
const maxFrame = 256 << 20

// MaxImage is the largest preview image (Event.Image) a Conn keeps, in
// bytes: a SaveImageWebsocket PNG is full size. A larger image is read and
// discarded; its event says how big it was.
const MaxImage = 64 << 20

// maxBinaryHeader bounds the part of a binary frame before the image: the
// type, and a type-4 frame's metadata length and JSON.
const maxBinaryHeader = 8 + 64<<10

// featureFlags is the first message on every connection: ComfyUI v0.3.45+
// then sends previews as type-4 frames, whose metadata names the prompt and
// node. Older servers ignore it and send type 1, attributed by Next.
var featureFlags = []byte(`{"type": "feature_flags", "data": {"supports_preview_metadata": true}}`)

// Conn is one WebSocket connection to ComfyUI's /ws. Next must not be called
// concurrently; Close and Ping may be called from any goroutine.
type Conn struct {
	ws *websocket.Conn
	// imageLimit is MaxImage; tests lower it.
	imageLimit int
	// at is what the last executing message on this connection announced;
	// only Next uses it.
	at attribution
	// text holds the text frame being decoded; only Next uses it. The
	// event keeps copies of what it needs, so the buffer is reused.
	text bytes.Buffer
}

// keepTextBuffer is the largest text buffer Next keeps for the next frame.
const keepTextBuffer = 64 << 10

// Dial opens GET /ws?clientId=<ClientID>. No Origin header is sent (ComfyUI
// rejects a loopback Host with a mismatched Origin, and coder/websocket adds
// none of its own). ctx bounds the handshake only. The first event is a
// status frame whose SID echoes the client id.
//
// Close any earlier connection with the same id first: ComfyUI would
// otherwise stop delivering to the new one when the old one closes (see Stream).
//
// The first message asks for previews with metadata (supports_preview_metadata).
func (c *Client) Dial(ctx context.Context) (*Conn, error) {
	u := c.base + "/ws?clientId=" + url.QueryEscape(c.clientID)
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: c.hc,
		HTTPHeader: http.Header{}, // deliberately without Origin
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("comfy: dial websocket (HTTP %d): %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("comfy: dial websocket: %w", err)
	}
	ws.SetReadLimit(maxFrame)
	if err := ws.Write(ctx, websocket.MessageText, featureFlags); err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("comfy: send feature flags: %w", err)
	}
	return &Conn{ws: ws, imageLimit: MaxImage}, nil
}

// Next reads and decodes the next message. Text frames become events of their
// type; binary frames become an EventBinary with BinaryType set and, for a
// preview (type 1 or 4), its image. A type-4 preview names its prompt and
// node in its metadata; a type-1 preview is attributed to the prompt and
// node the last executing message on this connection announced (empty
// when unknown, e.g. right after a reconnect).
//
// A frame that cannot be decoded gives an error wrapping ErrMalformedFrame and
// the connection stays usable. Any other error means the connection is gone.
// Canceling ctx closes the connection.
func (c *Conn) Next(ctx context.Context) (Event, error) {
	typ, r, err := c.ws.Reader(ctx)
	if err != nil {
		return Event{}, fmt.Errorf("comfy: read event: %w", err)
	}
	var ev Event
	if typ == websocket.MessageText {
		c.text.Reset()
		if _, err := c.text.ReadFrom(r); err != nil {
			return Event{}, fmt.Errorf("comfy: read event: %w", err)
		}
		ev, err = DecodeEvent(c.text.Bytes())
		if c.text.Cap() > keepTextBuffer {
			c.text = bytes.Buffer{}
		}
		if err != nil {
			return Event{}, err
		}
	} else {
		ev, err = readBinary(r, c.imageLimit)
		if err != nil {
			return Event{}, err
		}
	}
	c.at.apply(&ev)
	return ev, nil
}

// readBinary reads and decodes a binary frame, keeping an image of up to
// limit bytes.
func readBinary(r io.Reader, limit int) (Event, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(maxBinaryHeader+limit)))
	var dropped int64
	if err == nil && len(b) == maxBinaryHeader+limit {
		dropped, err = io.Copy(io.Discard, r)
	}
	if err != nil {
		return Event{}, fmt.Errorf("comfy: read event: %w", err)
	}
	ev, err := decodeBinary(b)
	if err != nil || (dropped == 0 && ev.ImageSize <= limit) {
		return ev, err
	}
	ev.Image = nil
	ev.ImageSize += int(dropped)
	return ev, nil
}

// Ping sends a WebSocket ping and waits for the pong. ComfyUI sends no
// heartbeat of its own, so this is how a dead connection is noticed. It needs
// a concurrent Next to read the pong.
func (c *Conn) Ping(ctx context.Context) error {
	if err := c.ws.Ping(ctx); err != nil {
		return fmt.Errorf("comfy: ping: %w", err)
	}
	return nil
}

// Close closes the connection with a close handshake (bounded by the
// library's 5 s timeouts), so ComfyUI forgets the socket before a new one
// with the same client id arrives.
func (c *Conn) Close() error {
	if err := c.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		return fmt.Errorf("comfy: close websocket: %w", err)
	}
	return nil
}

// closeNow drops the connection without a handshake, for a peer that stopped answering.
func (c *Conn) closeNow() { _ = c.ws.CloseNow() }
