package comfy

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// MaxObjectInfo bounds the body of GET /object_info. A stock ComfyUI serves
// about 0.3 MB; custom node packs and long model lists make it grow to a
// few MB, so 32 MiB leaves room and still stops a runaway answer.
const MaxObjectInfo = 32 << 20

// ObjectInfo reads GET /object_info: the node catalog of the instance, a JSON
// object of class_type -> {input: {required, optional, hidden}, output,
// output_node, ...}, returned as sent (ComfyUI's json.dumps, which may hold
// NaN or Infinity). A body larger than MaxObjectInfo is an error, never a
// truncated document.
func (c *Client) ObjectInfo(ctx context.Context) ([]byte, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/object_info", nil)
	if err != nil {
		return nil, fmt.Errorf("comfy: object info: %w", err)
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("comfy: object info: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxObjectInfo+1))
	if err != nil {
		return nil, fmt.Errorf("comfy: object info: read response: %w", err)
	}
	if len(b) > MaxObjectInfo {
		return nil, fmt.Errorf("comfy: object info: response larger than %d bytes", MaxObjectInfo)
	}
	return b, nil
}
