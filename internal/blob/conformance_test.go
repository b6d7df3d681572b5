package blob_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/blob/blobtest"
	"github.com/comfyfleet/comfyfleet/internal/blob/s3test"
)

// large crosses the S3 store's part size, so its multipart path is tested.
const large = 17 << 20

func TestDiskConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blob.Store {
		d, err := blob.NewDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}, blobtest.Options{Large: large})
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	t.Logf("SeaweedFS answered S3 requests %s after start", srv.StartTime)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return srv.Store(t, "fleet/files/")
	}, blobtest.Options{Large: large})
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// TestS3OpenIsOneRequest checks that a download takes one request to the
// object store when read as the API reads it, with http.ServeContent
// (which seeks to the end for the size, then back), and that a Range read
// still gets its bytes.
func TestS3OpenIsOneRequest(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	tr := &countingTransport{}
	s, err := blob.NewS3(t.Context(), blob.S3Options{
		Endpoint: srv.Endpoint, Bucket: srv.Bucket(t), Prefix: "fleet/", Transport: tr,
		Credentials: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("0123456789"), 100_000)
	if _, err := s.Put(t.Context(), "one", bytes.NewReader(want), 0); err != nil {
		t.Fatal(err)
	}
	read := func(rng string) (int, int64) {
		t.Helper()
		tr.n.Store(0)
		f, err := s.Open(t.Context(), "one")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "image/png") // as the API sets it: no sniffing
		req := httptest.NewRequest("GET", "/files/one", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		http.ServeContent(rec, req, "", f.ModTime(), f)
		return rec.Body.Len(), tr.n.Load()
	}
	if n, requests := read(""); n != len(want) || requests != 1 {
		t.Errorf("whole download: %d bytes in %d requests, want %d in 1", n, requests, len(want))
	}
	if n, _ := read("bytes=999990-"); n != 10 {
		t.Errorf("range download: %d bytes, want 10", n)
	}
}
