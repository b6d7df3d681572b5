package comfy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/coder/websocket"
)

// maxFrame is the WebSocket read limit. Binary previews (a SaveImageWebsocket
// PNG can be large) are discarded while read, so they cost no memory.
const maxFrame = 64 << 20

// Conn is one WebSocket connection to ComfyUI's /ws. Next must not be called
// concurrently; Close and Ping may be called from any goroutine.
type Conn struct {
	ws     *websocket.Conn
	prefix []byte // reused by Next for the start of binary frames
}

// Dial opens GET /ws?clientId=<ClientID>. No Origin header is sent (ComfyUI
// rejects a loopback Host with a mismatched Origin, and coder/websocket adds
// none of its own). ctx bounds the handshake only. The first event is a
// status frame whose SID echoes the client id.
//
// Close any earlier connection with the same id first: ComfyUI would
// otherwise stop delivering to the new one when the old one closes (see Stream).
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
	return &Conn{ws: ws}, nil
}

// Next reads and decodes the next message. Text frames become events of their
// type; binary frames become an EventBinary with BinaryType set (and, for a
// type-4 preview, PromptID and Node from its metadata); image bytes are
// discarded.
//
// A frame that cannot be decoded gives an error wrapping ErrMalformedFrame and
// the connection stays usable. Any other error means the connection is gone.
// Canceling ctx closes the connection.
func (c *Conn) Next(ctx context.Context) (Event, error) {
	typ, r, err := c.ws.Reader(ctx)
	if err != nil {
		return Event{}, fmt.Errorf("comfy: read event: %w", err)
	}
	if typ == websocket.MessageText {
		b, err := io.ReadAll(r)
		if err != nil {
			return Event{}, fmt.Errorf("comfy: read event: %w", err)
		}
		return DecodeEvent(b)
	}
	if c.prefix == nil {
		c.prefix = make([]byte, maxBinaryPrefix)
	}
	n, err := io.ReadFull(r, c.prefix)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Event{}, fmt.Errorf("comfy: read event: %w", err)
	}
	return decodeBinary(c.prefix[:n])
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
