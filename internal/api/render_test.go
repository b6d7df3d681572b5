package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/web"
)

func TestRecovererAnswersEnvelopeAndLogsCause(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := New(Deps{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	h := s.recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("secret internal detail")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/x", nil))

	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", rec.Body.String(), err)
	}
	if rec.Code != 500 || body["code"] != float64(500) || body["error"] != "internal_error" {
		t.Errorf("got %d %s, want the 500 envelope", rec.Code, rec.Body.String())
	}
	if strings.Contains(rec.Body.String(), "secret internal detail") || strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("the panic leaked to the client: %s", rec.Body.String())
	}
	if !strings.Contains(logs.String(), "secret internal detail") {
		t.Errorf("the cause is not in the log: %s", logs.String())
	}
}

// TestUnknownPathsOutsideAPIInEnvelope: with the dashboard mounted, a path
// that is neither a route nor one of its files (a missing asset) is a 404
// in the envelope, like every other unknown route; its pages still load.
func TestUnknownPathsOutsideAPIInEnvelope(t *testing.T) {
	t.Parallel()
	s := New(Deps{UI: web.Handler(), Log: slog.New(slog.DiscardHandler)})
	h := s.Handler()
	for _, path := range []string{"/nope.js", "/assets/missing.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 404 ||
			body["code"] != float64(404) || body["error"] != "route_not_found" {
			t.Errorf("GET %s: %d %q, want the 404 envelope", path, rec.Code, rec.Body.String())
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/tasks", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "<html") {
		t.Errorf("GET /tasks (a dashboard page): %d", rec.Code)
	}
}

// TestClientGoneIsNotAFailure: a handler stopped because its client went
// away answers 499 and logs no error.
func TestClientGoneIsNotAFailure(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := New(Deps{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	h := s.handle(func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("parse workflow: %w", context.Canceled)
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/tasks", nil))
	if rec.Code != 499 || !strings.Contains(rec.Body.String(), `"client_closed_request"`) {
		t.Errorf("got %d %s, want 499 client_closed_request", rec.Code, rec.Body.String())
	}
	if logs.Len() > 0 {
		t.Errorf("logged: %s", logs.String())
	}
}
