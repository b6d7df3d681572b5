package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/blob/s3test"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// withS3 keeps files in a fresh bucket of srv, under prefix "fleet/", with
// the keys read from a credentials file.
func withS3(t *testing.T, srv *s3test.Server, serve string) (bucket string, configure func(*config.Config)) {
	t.Helper()
	bucket = srv.Bucket(t)
	creds := srv.CredentialsFile(t)
	return bucket, func(c *config.Config) {
		c.Files.Driver = config.FilesS3
		c.Files.S3 = config.S3{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "fleet/", CredentialsFile: creds, Serve: serve}
	}
}

func get(t *testing.T, u, rng string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp, b
}

// TestS3 runs the gateway on a real S3-compatible server (SeaweedFS), one
// for all its subtests, each with a bucket of its own.
func TestS3(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	for name, fn := range map[string]func(*testing.T, *s3test.Server){
		"Files": testS3Files, "Redirect": testS3FilesRedirect, "StartErrors": testS3StartErrors,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, srv)
		})
	}
}

// testS3Files: with files.driver s3, uploads and outputs are objects in
// the bucket and nothing is written to files.dir; file URLs are streamed
// by the gateway, Range included; an upload given to a task reaches the
// instance from the bucket; deleting a file deletes its object.
func testS3Files(t *testing.T, srv *s3test.Server) {
	bucket, configure := withS3(t, srv, config.ServeProxy)
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: configure})
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, user)

	in := pngBytes(t)
	r := uploadRaw(e, user, "file", "in put.png", in)
	if r.Status != http.StatusOK {
		t.Fatalf("upload: %d %s", r.Status, r.Raw)
	}
	var f fileView
	r.Into(t, &f)
	if keys := srv.Objects(t, bucket, "fleet/"); !slices.Contains(keys, "fleet/"+f.FileID) {
		t.Fatalf("bucket holds %v, want fleet/%s", keys, f.FileID)
	}
	resp, body := get(t, f.URL, "")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, in) || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("GET %s: %d %q, %d bytes", f.URL, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	resp, body = get(t, f.URL, "bytes=3-10")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, in[3:11]) {
		t.Errorf("GET %s with Range 3-10: %d %x", f.URL, resp.StatusCode, body)
	}

	wf := map[string]any{
		"1": node("LoadImage", map[string]any{"image": "placeholder.png"}),
		"2": node("ImageInvert", map[string]any{"image": link("1", 0)}),
		"3": node("SaveImage", map[string]any{"images": link("2", 0), "filename_prefix": "s3/out"}),
	}
	v := submit(e, user, map[string]any{"workflow": wf, "params": map[string]any{"1.image": map[string]string{"fileId": f.FileID}}})
	done := waitStatus(e, user, v.ID, "completed", 30*time.Second)
	image, _ := receivedPrompt(t, e.Sims[0], v.ID)["1"].Inputs["image"].(string)
	q := url.Values{"type": {"input"}, "subfolder": {path.Dir(image)}, "filename": {path.Base(image)}}
	if resp, got := get(t, e.Sims[0].URL()+"/view?"+q.Encode(), ""); resp.StatusCode != 200 || !bytes.Equal(got, in) {
		t.Errorf("the instance got %d bytes (%d) for %s, want the upload's %d", len(got), resp.StatusCode, image, len(in))
	}
	out := done.Result.Outputs["3"][0]
	if keys := srv.Objects(t, bucket, "fleet/"); !slices.Contains(keys, "fleet/"+out.FileID) {
		t.Errorf("bucket holds %v, want the output fleet/%s", keys, out.FileID)
	}
	assertPNG(t, out.URL)

	if r := e.Do("DELETE", "/api/files/"+f.FileID, user, nil); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	if keys := srv.Objects(t, bucket, "fleet/"); slices.Contains(keys, "fleet/"+f.FileID) {
		t.Errorf("deleted file's object is still in the bucket: %v", keys)
	}
	if resp, _ := get(t, f.URL, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleted file served: %d", resp.StatusCode)
	}
	if _, err := os.Stat(e.Config.Files.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("files.dir %s was created with the s3 driver: %v", e.Config.Files.Dir, err)
	}
}

// testS3FilesRedirect: with files.s3.serve "redirect", a file URL is a 302
// to a presigned URL of the object store, which serves the bytes with the
// file's type and name.
func testS3FilesRedirect(t *testing.T, srv *s3test.Server) {
	_, configure := withS3(t, srv, config.ServeRedirect)
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: configure})
	user := e.Login(apptest.User, apptest.UserPass)
	in := pngBytes(t)
	r := uploadRaw(e, user, "file", "café.png", in)
	if r.Status != http.StatusOK {
		t.Fatalf("upload: %d %s", r.Status, r.Raw)
	}
	var f fileView
	r.Into(t, &f)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, srv.Endpoint+"/") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET %s: %d Location %q Cache-Control %q, want 302 to %s, no-store", f.URL, resp.StatusCode, loc, resp.Header.Get("Cache-Control"), srv.Endpoint)
	}
	resp, body := get(t, loc, "")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, in) {
		t.Fatalf("GET the presigned URL: %d, %d bytes", resp.StatusCode, len(body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
		t.Errorf("presigned GET Content-Type = %q, want image/png", ct)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "caf") || !strings.HasPrefix(cd, "inline") {
		t.Errorf("presigned GET Content-Disposition = %q, want inline with the name", cd)
	}
	if resp, _ := get(t, loc+"x", ""); resp.StatusCode == http.StatusOK {
		t.Errorf("a tampered presigned URL was served")
	}
}

// testS3StartErrors: a missing bucket or missing credentials stop the
// start with an error that says which.
func testS3StartErrors(t *testing.T, srv *s3test.Server) {
	_, configure := withS3(t, srv, config.ServeProxy)
	for _, tc := range []struct {
		name   string
		change func(c *config.Config)
		want   string
	}{
		{"no bucket", func(c *config.Config) { c.Files.S3.Bucket = "no-such-bucket" }, `bucket "no-such-bucket" does not exist`},
		{"no credentials file", func(c *config.Config) { c.Files.S3.CredentialsFile = "/nonexistent/credentials" }, "credentials"},
		{"wrong keys", func(c *config.Config) {
			p := t.TempDir() + "/creds"
			_ = os.WriteFile(p, []byte("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n"), 0o600)
			c.Files.S3.CredentialsFile = p
		}, "bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Config{DataDir: t.TempDir()}
			cfg.Server.Listen = "127.0.0.1:0"
			cfg.Auth.AdminPassword = "admin-secret-pw"
			configure(&cfg)
			tc.change(&cfg)
			cfg.WithDefaults()
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			a, err := app.New(ctx, cfg, app.Options{Out: io.Discard})
			if err == nil {
				t.Fatalf("app.New started: %v", a.Addr())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("app.New: %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
