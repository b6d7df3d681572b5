package comfy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestObjectInfo(t *testing.T) {
	t.Parallel()
	const body = `{"KSampler": {"input": {"required": {"cfg": ["FLOAT", {"max": Infinity}]}}, "output_node": false}}`
	var path string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.Method + " " + r.URL.Path
		_, _ = io.WriteString(w, body)
	})
	got, err := c.ObjectInfo(t.Context())
	if err != nil {
		t.Fatalf("ObjectInfo: %v", err)
	}
	if path != "GET /object_info" || string(got) != body {
		t.Errorf("ObjectInfo sent %q and returned %q; want GET /object_info and the body as sent", path, got)
	}
}

func TestObjectInfoTooLarge(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		for n := 0; n <= MaxObjectInfo; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	_, err := c.ObjectInfo(t.Context())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("ObjectInfo of an oversized body: err = %v, want a size error", err)
	}
}

func TestObjectInfoHTTPError(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	_, err := c.ObjectInfo(t.Context())
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusInternalServerError {
		t.Fatalf("ObjectInfo on a 500: err = %v, want *HTTPError 500", err)
	}
}
