package comfy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// UploadParams is what Upload sends to POST /upload/image.
type UploadParams struct {
	// Filename is the name ComfyUI stores the file under (it may pick
	// "name (1).ext" on a collision; always use UploadResult.Name). Required.
	Filename string
	// Body is the file's content. Required.
	Body io.Reader
	// Subfolder is created below the type's directory when not empty, e.g. a
	// per-task folder.
	Subfolder string
	// Type is "input" (ComfyUI's default when empty), "temp" or "output".
	Type string
	// Overwrite replaces an existing file of the same name.
	Overwrite bool
}

// UploadResult is ComfyUI's answer to an upload.
type UploadResult struct {
	// Name is the stored file name: use it, not the name sent.
	Name string `json:"name"`
	// Subfolder echoes the subfolder sent.
	Subfolder string `json:"subfolder"`
	// Type is "input", "temp" or "output".
	Type string `json:"type"`
}

// Annotated returns the value a LoadImage input takes to read the uploaded
// file: "subfolder/name", plus " [temp]" or " [output]" when the file is not
// in the input directory (docs/comfyui-protocol.md, Files).
func (r UploadResult) Annotated() string {
	p := r.Name
	if sub := strings.TrimRight(r.Subfolder, "/"); sub != "" {
		p = sub + "/" + p
	}
	if r.Type != "" && r.Type != "input" {
		p += " [" + r.Type + "]"
	}
	return p
}

// errUploadAborted stops the form writer when the request ended early.
var errUploadAborted = errors.New("upload aborted")

// Upload sends a file with POST /upload/image (multipart fields image,
// subfolder, type, overwrite). The body is streamed, not buffered.
func (c *Client) Upload(ctx context.Context, p UploadParams) (*UploadResult, error) {
	if p.Filename == "" || p.Body == nil {
		return nil, errors.New("comfy: upload: filename and body are required")
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeUploadForm(mw, p))
	}()
	res, err := c.sendUpload(ctx, pr, mw.FormDataContentType())
	pr.CloseWithError(errUploadAborted) // unblocks the writer if the server answered early
	<-done
	if err != nil {
		return nil, fmt.Errorf("comfy: upload %s: %w", p.Filename, err)
	}
	return res, nil
}

func (c *Client) sendUpload(ctx context.Context, body io.Reader, contentType string) (*UploadResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/upload/image", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res UploadResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&res); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if res.Name == "" {
		return nil, errors.New("read response: no name")
	}
	return &res, nil
}

// writeUploadForm writes the multipart form: the text fields, then the file.
func writeUploadForm(mw *multipart.Writer, p UploadParams) error {
	fields := [][2]string{{"subfolder", p.Subfolder}, {"type", p.Type}}
	if p.Overwrite {
		fields = append(fields, [2]string{"overwrite", "true"})
	}
	for _, f := range fields {
		if f[1] == "" {
			continue
		}
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return err
		}
	}
	fw, err := mw.CreateFormFile("image", p.Filename)
	if err != nil {
		return err
	}
	if _, err := io.Copy(fw, p.Body); err != nil {
		return err
	}
	return mw.Close()
}

// View opens GET /view for a file. On 200 it returns the response, whose
// body the caller must close; Content-Type is ComfyUI's guess from the
// extension. Any other status returns an *HTTPError (a missing file matches
// errors.Is(err, ErrNotFound)).
func (c *Client) View(ctx context.Context, ref FileRef) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/view?"+viewQuery(ref), nil)
	if err != nil {
		return nil, fmt.Errorf("comfy: view %s: %w", ref.Filename, err)
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("comfy: view %s: %w", ref.Filename, err)
	}
	return resp, nil
}

// viewQuery encodes filename, subfolder and type (when set). Spaces become
// %20 rather than "+", which every query parser reads the same way.
func viewQuery(ref FileRef) string {
	q := url.Values{"filename": {ref.Filename}, "subfolder": {ref.Subfolder}}
	if ref.Type != "" {
		q.Set("type", ref.Type)
	}
	return strings.ReplaceAll(q.Encode(), "+", "%20")
}
