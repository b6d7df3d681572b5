package api

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// envelopeWriter lets a handler that does not know the contract
// (http.ServeContent, the dashboard's file server) answer errors in the
// envelope: an error status it writes is rendered as the envelope, and the
// plain text it writes after is dropped. Success passes through untouched.
type envelopeWriter struct {
	http.ResponseWriter
	s *Server
	r *http.Request
	// failed is set once an error status went out as the envelope.
	failed bool
}

// envelopeErrors wraps w in an envelopeWriter.
func (s *Server) envelopeErrors(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	return &envelopeWriter{ResponseWriter: w, s: s, r: r}
}

func (e *envelopeWriter) WriteHeader(code int) {
	if code < 400 || e.failed {
		e.ResponseWriter.WriteHeader(code)
		return
	}
	e.failed = true
	e.Header().Del("Content-Disposition")
	renderError(e.ResponseWriter, e.r, e.s.log, statusError(e.r, code))
}

func (e *envelopeWriter) Write(b []byte) (int, error) {
	if e.failed {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

// ReadFrom keeps the server's sendfile path for downloads.
func (e *envelopeWriter) ReadFrom(src io.Reader) (int64, error) {
	if e.failed {
		return io.Copy(io.Discard, src)
	}
	if rf, ok := e.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(e.ResponseWriter, src)
}

// Unwrap gives http.ResponseController the wrapped writer.
func (e *envelopeWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// statusError is the envelope of an error status a plain handler chose.
func statusError(r *http.Request, code int) *Error {
	switch code {
	case http.StatusNotFound:
		return errorf(code, "route_not_found", "No route %s %s.", r.Method, r.URL.Path)
	case http.StatusRequestedRangeNotSatisfiable:
		return errorf(code, "range_not_satisfiable", "The requested range is outside the file.")
	}
	text := http.StatusText(code)
	if text == "" {
		text = fmt.Sprintf("Status %d", code)
	}
	return errorf(code, strings.ReplaceAll(strings.ToLower(text), " ", "_"), "%s.", text)
}
