package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// maxJSONBody bounds a JSON response. /queue and /history carry whole prompts,
// so this is generous.
const maxJSONBody = 64 << 20

// Client talks to one ComfyUI instance. It is safe for concurrent use.
type Client struct {
	base     string // e.g. "http://127.0.0.1:8001", no trailing slash
	clientID string
	hc       *http.Client
}

// New returns a client for the ComfyUI instance at baseURL (for example
// "http://127.0.0.1:8001"; a path prefix such as "/api" is kept).
//
// clientID is sent as client_id with every prompt and as clientId on the
// WebSocket, so the events of our prompts reach our socket; an empty id gets
// a random UUID. hc nil means an http.Client with keep-alives and per-host
// idle connections, no proxy (instances sit on the local network) and no
// overall timeout: bound every call with ctx.
func New(baseURL, clientID string, hc *http.Client) *Client {
	if clientID == "" {
		clientID = uuid.NewString()
	}
	if hc == nil {
		hc = &http.Client{Transport: defaultTransport()}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), clientID: clientID, hc: hc}
}

func defaultTransport() *http.Transport {
	return &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// ClientID returns the id sent as client_id and as the WebSocket clientId.
func (c *Client) ClientID() string { return c.clientID }

// BaseURL returns the instance's base URL without a trailing slash.
func (c *Client) BaseURL() string { return c.base }

// newRequest builds a request for path (which starts with "/") relative to
// the base URL. A non-nil body is sent as JSON.
func (c *Client) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// do sends req and returns the response when its status is 200; any other
// status is read into an *HTTPError and the body closed.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, readHTTPError(resp)
	}
	return resp, nil
}

// readHTTPError consumes and closes resp's body and describes it.
func readHTTPError(resp *http.Response) *HTTPError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return &HTTPError{Status: resp.StatusCode, Body: string(b)}
}

// call runs one JSON round trip: body (if non-nil) is sent as JSON and a 200
// answer is decoded into out (if non-nil). op names the operation in errors.
func (c *Client) call(ctx context.Context, op, method, path string, body, out any) error {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("comfy: %s: %w", op, err)
	}
	resp, err := c.do(req)
	if err != nil {
		return fmt.Errorf("comfy: %s: %w", op, err)
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJSONBody))
	} else {
		err = json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(out)
	}
	if err != nil {
		return fmt.Errorf("comfy: %s: read response: %w", op, err)
	}
	return nil
}
