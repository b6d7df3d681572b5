package api

import (
	"bytes"
	"encoding/json"
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
