package comfy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUpload(t *testing.T) {
	t.Parallel()
	png := []byte("\x89PNG\r\n\x1a\n fake image bytes")
	type form struct{ filename, subfolder, typ, overwrite string }
	got := make(chan form, 1)
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/upload/image" {
			t.Errorf("got %s %s", req.Method, req.URL.Path)
		}
		f, hdr, err := req.FormFile("image")
		if err != nil {
			t.Errorf("FormFile: %v", err)
			http.Error(w, "", http.StatusBadRequest)
			return
		}
		defer f.Close()
		if b, _ := io.ReadAll(f); !bytes.Equal(b, png) {
			t.Errorf("uploaded bytes = %q, want %q", b, png)
		}
		got <- form{hdr.Filename, req.FormValue("subfolder"), req.FormValue("type"), req.FormValue("overwrite")}
		rec(t, "s03/upload_subfolder").write(w)
	})

	res, err := c.Upload(t.Context(), UploadParams{
		Filename: "gw_probe_upload.png", Body: bytes.NewReader(png), Subfolder: "gwsub", Overwrite: true,
	})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}

	if f, want := recv(t, got, "form"), (form{"gw_probe_upload.png", "gwsub", "", "true"}); f != want {
		t.Errorf("form = %+v, want %+v", f, want)
	}
	if diff := cmp.Diff(&UploadResult{Name: "gw_probe_upload.png", Subfolder: "gwsub", Type: "input"}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if got := res.Annotated(); got != "gwsub/gw_probe_upload.png" {
		t.Errorf("Annotated() = %q", got)
	}
}

func TestUploadRenamedOnCollision(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		rec(t, "s03/upload_same_name_different_content_no_overwrite").write(w)
	})
	res, err := c.Upload(t.Context(), UploadParams{Filename: "gw_probe_upload.png", Body: strings.NewReader("x")})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if res.Name != "gw_probe_upload (1).png" || res.Annotated() != "gw_probe_upload (1).png" {
		t.Errorf("got %+v, annotated %q", res, res.Annotated())
	}
}

func TestUploadErrors(t *testing.T) {
	t.Parallel()
	r := rec(t, "s03/upload_without_image_field") // 400, empty body
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { r.write(w) })

	_, err := c.Upload(t.Context(), UploadParams{Filename: "a.png", Body: strings.NewReader("x")})
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.Status != 400 {
		t.Errorf("got %v, want *HTTPError 400", err)
	}
	if _, err := c.Upload(t.Context(), UploadParams{Body: strings.NewReader("x")}); err == nil {
		t.Errorf("Upload without filename: got nil error")
	}
}

// failingReader fails after the first read, as a broken source would.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		return 0, errors.New("disk on fire")
	}
	r.n++
	return copy(p, "partial"), nil
}

func TestUploadBodyErrorAbortsRequest(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		rec(t, "s03/upload_subfolder").write(w)
	})
	if _, err := c.Upload(t.Context(), UploadParams{Filename: "a.png", Body: &failingReader{}}); err == nil {
		t.Errorf("got nil error for a failing body")
	}
}

func TestAnnotated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    UploadResult
		want string
	}{
		{UploadResult{Name: "in.png", Type: "input"}, "in.png"},
		{UploadResult{Name: "in.png"}, "in.png"},
		{UploadResult{Name: "in.png", Subfolder: "gw/job42", Type: "input"}, "gw/job42/in.png"},
		{UploadResult{Name: "in.png", Subfolder: "gw/job42/", Type: "input"}, "gw/job42/in.png"},
		{UploadResult{Name: "run_00001_.png", Type: "output"}, "run_00001_.png [output]"},
		{UploadResult{Name: "x (1).png", Subfolder: "gw", Type: "temp"}, "gw/x (1).png [temp]"},
	}
	for _, tt := range tests {
		if got := tt.r.Annotated(); got != tt.want {
			t.Errorf("%+v.Annotated() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestView(t *testing.T) {
	t.Parallel()
	png := []byte("\x89PNG\r\n\x1a\nbytes")
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		want := "/view?filename=gw_probe_upload%20%281%29.png&subfolder=&type=input"
		if req.URL.RequestURI() != want {
			t.Errorf("got %s, want %s", req.URL.RequestURI(), want)
		}
		if q := req.URL.Query(); q.Get("filename") != "gw_probe_upload (1).png" {
			t.Errorf("filename decodes to %q", q.Get("filename"))
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(png)
	})

	resp, err := c.View(t.Context(), FileRef{Kind: "images", Filename: "gw_probe_upload (1).png", Type: "input"})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(b, png) || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("got %q (%s)", b, resp.Header.Get("Content-Type"))
	}
}

func TestViewMissing(t *testing.T) {
	t.Parallel()
	r := rec(t, "s03/view_missing") // 404, empty body
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { r.write(w) })
	_, err := c.View(t.Context(), FileRef{Filename: "does_not_exist.png", Type: "output"})
	var herr *HTTPError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &herr) || herr.Status != 404 {
		t.Errorf("got %v, want a 404 *HTTPError matching ErrNotFound", err)
	}
}

func TestViewTraversalIsNotNotFound(t *testing.T) {
	t.Parallel()
	r := rec(t, "s03/view_traversal") // 400
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { r.write(w) })
	_, err := c.View(t.Context(), FileRef{Filename: "../../etc/passwd", Type: "input"})
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.Status != 400 || errors.Is(err, ErrNotFound) {
		t.Errorf("got %v, want a 400 *HTTPError", err)
	}
}
