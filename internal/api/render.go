package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Error is an error with an HTTP status and the contract's envelope fields.
// Handlers return it (or any error: unknown errors become a 500 whose cause
// stays in the log).
type Error struct {
	Status  int
	Code    string // snake_case reason
	Message string // human sentence
	Data    any    // optional details
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// errorf builds an *Error.
func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// statusClientClosed answers a request whose client went away before the
// answer (nginx's 499): it is never read, but access logs and metrics show it.
const statusClientClosed = 499

// Common errors.
var (
	errNotFound  = errorf(http.StatusNotFound, "not_found", "No such resource.")
	errForbidden = errorf(http.StatusForbidden, "forbidden", "This action needs the admin role.")
)

// envelope is the contract's response shape for success and error.
type envelope struct {
	Code    int    `json:"code"`
	Data    any    `json:"data,omitempty"`
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// handlerFunc is an HTTP handler that returns an error for the renderer.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// writeJSON writes a success envelope around data.
func writeJSON(w http.ResponseWriter, data any) error {
	return writeEnvelope(w, http.StatusOK, envelope{Code: http.StatusOK, Data: data})
}

func writeEnvelope(w http.ResponseWriter, status int, env envelope) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(env)
}

// renderError writes err in the error envelope. Unknown errors are logged
// and answered with a generic 500.
func renderError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	apiErr := toAPIError(err)
	if apiErr.Status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if apiErr.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	if apiErr.Status == http.StatusRequestTimeout {
		// The write deadline ends with the read deadline that expired: give
		// the answer a moment of its own.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeoutAnswerWindow))
	}
	_ = writeEnvelope(w, apiErr.Status, envelope{
		Code: apiErr.Status, Error: apiErr.Code, Message: apiErr.Message, Data: apiErr.Data,
	})
}

// toAPIError maps any error to the envelope: the one place store errors
// become HTTP statuses.
func toAPIError(err error) *Error {
	var apiErr *Error
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &maxErr):
		return errorf(http.StatusRequestEntityTooLarge, "body_too_large", "The request body is larger than %d bytes.", maxErr.Limit)
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case errors.Is(err, store.ErrConflict):
		return errorf(http.StatusConflict, "conflict", "The resource is not in a state that allows this change.")
	case errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "store_unavailable", "The store is unreachable; try again shortly.")
	case errors.Is(err, context.Canceled):
		// The client went away and the handler stopped: nobody reads this,
		// and it is no failure of ours to log.
		return errorf(statusClientClosed, "client_closed_request", "The request was cancelled before it was answered.")
	}
	return errorf(http.StatusInternalServerError, "internal_error", "Something went wrong on our side; it has been logged.")
}

// handle adapts a handlerFunc to http.Handler, rendering its error.
func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			renderError(w, r, s.log, err)
		}
	})
}

// recoverer turns a panic into a 500 envelope; the cause goes to the log only.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			s.log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			renderError(w, r, s.log, errors.New("panic"))
		}()
		next.ServeHTTP(w, r)
	})
}

// decodeJSON reads a JSON body into v, limited to the configured size.
// Malformed JSON is a 400 and an oversized body a 413, both in the envelope.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONLimit(w, r, v, s.maxBody())
}

// decodeJSONLimit is decodeJSON with a limit of its own.
func decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonError(err)
		}
		return errorf(http.StatusBadRequest, "malformed_json", "The body must hold exactly one JSON value.")
	}
	return nil
}

func jsonError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return err
	}
	if errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "malformed_json", "The request body is empty; a JSON object was expected.")
	}
	if isTimeout(err) {
		return errTimeout
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_field",
			Message: fmt.Sprintf("Field %q must be %s, not %s.", typeErr.Field, typeErr.Type, typeErr.Value),
			Data:    map[string]string{"field": typeErr.Field}}
	}
	return errorf(http.StatusBadRequest, "malformed_json", "The request body is not valid JSON: %s.", err.Error())
}

// timeoutAnswerWindow is how long a 408 may take to be written.
const timeoutAnswerWindow = 5 * time.Second

// errTimeout answers a request whose body did not arrive within the
// server's read timeout.
var errTimeout = errorf(http.StatusRequestTimeout, "request_timeout", "The request body did not arrive in time.")

// bodyError maps an error met reading a request body: over the limit
// stays a 413 (see toAPIError), a timeout is a 408, and anything else (the
// client went away mid-body) a 400.
func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return err
	case isTimeout(err):
		return errTimeout
	}
	return errorf(http.StatusBadRequest, "incomplete_body", "The request body ended early.")
}

// isTimeout reports whether err is a network timeout (a read deadline).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// formatTime renders the contract's time format: RFC 3339 UTC with milliseconds.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// timePtr renders a time or null when zero.
func timePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

// decodeBytes decodes an already-read body with the same errors as decodeJSON.
func decodeBytes(b []byte, v any) error {
	if len(b) == 0 {
		return jsonError(io.EOF)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return jsonError(err)
	}
	return nil
}
