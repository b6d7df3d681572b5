package logging

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// noteKey is the context key of a request's *note.
type noteKey struct{}

// note is what handlers add to their request's log line.
type note struct {
	mu     sync.Mutex
	taskID string
	user   string
}

// NoteTask names the task a request is about (the one it created), for its
// log line. Outside Requests it does nothing.
func NoteTask(ctx context.Context, id string) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.mu.Lock()
		n.taskID = id
		n.mu.Unlock()
	}
}

// NoteUser names the authenticated caller of a request, for its log line.
func NoteUser(ctx context.Context, username string) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.mu.Lock()
		n.user = username
		n.mu.Unlock()
	}
}

// quietRoutes are the probes: logged at debug level, since orchestrators
// call them every few seconds.
var quietRoutes = map[string]bool{"GET /livez": true, "GET /readyz": true, "GET /api/health": true}

// Requests logs each request next answers: method, route pattern (what
// the http.ServeMux matched, "other" for none), path (never the query,
// which may hold a token), status, duration, bytes written, the task id
// (the {id} of a /api/tasks route, or one named with NoteTask) and the
// user (NoteUser). Headers and bodies are never logged.
func Requests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		n := &note{}
		r = r.WithContext(context.WithValue(r.Context(), noteKey{}, n))
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)

		route := r.Pattern
		if route == "" {
			route = "other"
		}
		level := slog.LevelInfo
		switch {
		case quietRoutes[route]:
			level = slog.LevelDebug
		case rec.status() >= 500:
			level = slog.LevelWarn
		}
		if !log.Enabled(r.Context(), level) {
			return
		}
		n.mu.Lock()
		taskID, user := n.taskID, n.user
		n.mu.Unlock()
		if taskID == "" && strings.Contains(route, "/api/tasks/{id}") {
			taskID = r.PathValue("id")
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status()), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int64("bytes", rec.bytes),
		}
		if taskID != "" {
			attrs = append(attrs, slog.String("task_id", taskID))
		}
		if user != "" {
			attrs = append(attrs, slog.String("user", user))
		}
		log.LogAttrs(r.Context(), level, "http request", attrs...)
	})
}

// recorder remembers the status and size of an answer. Unwrap lets
// http.ResponseController and the WebSocket upgrade reach the connection.
type recorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the server's sendfile path for file downloads.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(r.ResponseWriter, src)
	}
	r.bytes += n
	return n, err
}

// Unwrap returns the wrapped writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
