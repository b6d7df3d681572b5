package web_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/web"
)

func get(t *testing.T, h http.Handler, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServesIndexForRoutes(t *testing.T) {
	h := web.Handler()
	for _, path := range []string{"/", "/tasks", "/tasks/abc", "/some/client/route"} {
		res := get(t, h, path, nil)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `<script type="module" src="/js/app.js">`) {
			t.Errorf("GET %s = %d, want index.html", path, res.StatusCode)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP = %q", path, csp)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control = %q, want no-cache", path, got)
		}
	}
}

func TestHandlerAssetsHaveTypesAndETags(t *testing.T) {
	h := web.Handler()
	for path, ctype := range map[string]string{
		"/js/app.js":       "text/javascript",
		"/css/app.css":     "text/css",
		"/favicon.svg":     "image/svg+xml",
		"/js/views/x.js":   "",
		"/css/missing.css": "",
	} {
		res := get(t, h, path, nil)
		if ctype == "" {
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404 for a missing asset", path, res.StatusCode)
			}
			continue
		}
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s = %d %q, want 200 %s", path, res.StatusCode, res.Header.Get("Content-Type"), ctype)
			continue
		}
		etag := res.Header.Get("ETag")
		if etag == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: ETag %q, nosniff %q", path, etag, res.Header.Get("X-Content-Type-Options"))
			continue
		}
		again := get(t, h, path, map[string]string{"If-None-Match": etag})
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag = %d, want 304", path, again.StatusCode)
		}
	}
}

// TestModuleImportsResolve checks, without a browser, that every relative
// import of every module names an embedded file, so a typo cannot ship.
func TestModuleImportsResolve(t *testing.T) {
	re := regexp.MustCompile(`(?m)(?:^import .*? from |import\()\s*'(\.{1,2}/[^']+)'`)
	root := "static"
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".js") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			target := filepath.Join(filepath.Dir(path), m[1])
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s imports %s, which does not exist", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
