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
