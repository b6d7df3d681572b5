package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/comfyfleet/comfyfleet/internal/auth"
	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// fixedConfig is a ConfigService whose config never changes.
type fixedConfig struct{ c config.Config }

func (f fixedConfig) Current() config.Config { return f.c }

func (f fixedConfig) Update(context.Context, []byte) (config.Config, error) {
	return f.c, errors.New("fixed config")
}

// fuzzUploadLimit is the upload limit of the fuzzed server: small, so the
// fuzzer reaches it.
const fuzzUploadLimit = 4096

// memFiles keeps file records in memory: the part of store.Store the
// upload handler uses (a real store would make the fuzzer instrument SQLite).
// Any other method panics.
type memFiles struct {
	store.Store
	// mu guards files.
	mu    sync.Mutex
	files map[string]*file.File
}

func (m *memFiles) FileInsert(_ context.Context, f *file.File) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[f.ID]; ok {
		return store.ErrConflict
	}
	m.files[f.ID] = f
	return nil
}

func (m *memFiles) FileDelete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[id]; !ok {
		return store.ErrNotFound
	}
	delete(m.files, id)
	return nil
}

func (m *memFiles) UsageGet(_ context.Context, p *store.UsageGetParams) (store.Usage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var u store.Usage
	for _, f := range m.files {
		if f.Owner == p.Owner {
			u.StoredBytes += f.Size
		}
	}
	return u, nil
}

// newUploadServer is a Server with file records in memory and their bytes
// on disk.
func newUploadServer(tb testing.TB) *Server {
	tb.Helper()
	st := &memFiles{files: map[string]*file.File{}}
	bl, err := blob.NewDisk(tb.TempDir(), blob.NoSync())
	if err != nil {
		tb.Fatal(err)
	}
	cfg := config.Default()
	cfg.Files.MaxUploadBytes = fuzzUploadLimit
	cfg.Limits.MaxStoredBytesPerUser = 1 << 40
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return New(Deps{Log: log, Store: st, Blob: bl, Config: fixedConfig{cfg}})
}

// postUpload sends body as POST /api/files/upload of a user, with
// contentType, to the handler as the route table wraps it.
func postUpload(s *Server, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/api/files/upload", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req = req.WithContext(auth.WithClaims(req.Context(), &auth.Claims{Username: "alice", Role: "user"}))
	rec := httptest.NewRecorder()
	s.recoverer(s.handle(s.uploadFile)).ServeHTTP(rec, req)
	return rec
}

// FuzzUpload sends any body, under any boundary, to the upload handler: it
// never panics, always answers the envelope with 200, 400 or 413, and a
// stored file has a safe name and exactly the bytes it reports.
func FuzzUpload(f *testing.F) {
	f.Add("b0und", []byte("--b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.png\"\r\n"+
		"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--b0und--\r\n"))
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../etc/passwd\"\r\n\r\nx\r\n--b--\r\n"))
	s := newUploadServer(f)
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		rec := postUpload(s, "multipart/form-data; boundary="+boundary, body)
		var env struct {
			Code  int             `json:"code"`
			Data  json.RawMessage `json:"data"`
			Error string          `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Code != rec.Code {
			t.Fatalf("answer %d %q is not the envelope", rec.Code, rec.Body.Bytes())
		}
		switch rec.Code {
		case http.StatusOK:
			checkStored(t, s, env.Data)
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if env.Error == "" {
				t.Fatalf("%d without an error code: %s", rec.Code, rec.Body.Bytes())
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}

// checkStored checks an accepted upload, then deletes it.
func checkStored(t *testing.T, s *Server, data json.RawMessage) {
	t.Helper()
	var v fileView
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("data %s: %v", data, err)
	}
	if !safeName(v.Filename) || blob.SanitizeFilename(v.Filename) != v.Filename {
		t.Errorf("stored name %q is not safe", v.Filename)
	}
	if v.Size > fuzzUploadLimit || v.ContentType == "" {
		t.Errorf("size %d (limit %d), content type %q", v.Size, fuzzUploadLimit, v.ContentType)
	}
	ctx := context.Background()
	bf, err := s.deps.Blob.Open(ctx, v.FileID)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, bf)
	bf.Close()
	if err != nil || n != v.Size {
		t.Errorf("blob holds %d bytes (%v), the record says %d", n, err, v.Size)
	}
	if err := s.deps.Store.FileDelete(ctx, v.FileID); err != nil {
		t.Fatal(err)
	}
	_ = s.deps.Blob.Delete(ctx, v.FileID)
}

// safeName reports whether name can go in a path or a header as is.
func safeName(name string) bool {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\"`) {
		return false
	}
	return strings.IndexFunc(name, unicode.IsControl) < 0
}

// TestUploadCutBody: a body that ends inside the file part (a client gone,
// or a malformed body) is the client's 400 upload_aborted, not a 500.
func TestUploadCutBody(t *testing.T) {
	t.Parallel()
	s := newUploadServer(t)
	body := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\npartial bytes"
	rec := postUpload(s, "multipart/form-data; boundary=b", []byte(body))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"upload_aborted"`) {
		t.Errorf("cut body: %d %s, want 400 upload_aborted", rec.Code, rec.Body.String())
	}
}
