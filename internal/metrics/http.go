package metrics

import (
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics count and time requests by route pattern, method and status.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	// mu guards children: the curried children of each (pattern, method,
	// code) seen, so a request pays one map read.
	mu       sync.RWMutex
	children map[routeKey]routeChildren
}

// routeKey is a request's label set before formatting: the mux pattern
// (empty when no route matched), the method label and the status code.
type routeKey struct {
	pattern, method string
	code            int
}

type routeChildren struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// routeOther is the route label of requests no route matched (unknown
// paths, wrong methods, the dashboard's files).
const routeOther = "other"

func newHTTPMetrics() *httpMetrics {
	labels := []string{"method", "route", "code"}
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests this replica answered, by method, route pattern and status code.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method, route pattern and status code; WebSocket upgrades are not timed.",
			Buckets: prometheus.DefBuckets,
		}, labels),
		children: map[routeKey]routeChildren{},
	}
}

// InstrumentHTTP counts and times the requests next answers. next must be
// (or end in) the http.ServeMux of the route table: the route label is the
// pattern the mux matched (r.Pattern, set on the request it is given), so
// the label set is bounded by the table, never by the paths clients send.
func (m *Metrics) InstrumentHTTP(next http.Handler) http.Handler {
	h := m.http
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		c := h.child(r, rec.status())
		c.requests.Inc()
		if rec.code != http.StatusSwitchingProtocols {
			c.duration.Observe(time.Since(start).Seconds())
		}
	})
}

// child returns the children of a request's labels, creating them once.
func (h *httpMetrics) child(r *http.Request, code int) routeChildren {
	key := routeKey{pattern: r.Pattern, method: methodLabel(r), code: code}
	h.mu.RLock()
	c, ok := h.children[key]
	h.mu.RUnlock()
	if ok {
		return c
	}
	route := routeOther
	if key.pattern != "" {
		_, route = splitPattern(key.pattern)
	}
	labels := prometheus.Labels{"method": key.method, "route": route, "code": strconv.Itoa(code)}
	c = routeChildren{requests: h.requests.With(labels), duration: h.duration.With(labels)}
	h.mu.Lock()
	h.children[key] = c
	h.mu.Unlock()
	return c
}

// splitPattern splits a mux pattern "GET /api/tasks/{id}" into its method
// (possibly empty) and path.
func splitPattern(p string) (method, path string) {
	if m, rest, ok := strings.Cut(p, " "); ok {
		return m, strings.TrimSpace(rest)
	}
	return "", p
}

// methodLabel is the method of the matched pattern, else the request's
// method when it is a standard one, else "OTHER".
func methodLabel(r *http.Request) string {
	if m, _ := splitPattern(r.Pattern); m != "" {
		return m
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return r.Method
	}
	return "OTHER"
}

// recorder remembers the status code a handler sent. Unwrap lets
// http.ResponseController and the WebSocket upgrade reach the connection.
type recorder struct {
	http.ResponseWriter
	code int
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
	return r.ResponseWriter.Write(b)
}

// ReadFrom keeps the server's sendfile path for file downloads.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(r.ResponseWriter, src)
}

// Unwrap returns the wrapped writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// status is the code sent, 200 when the handler wrote nothing.
func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// DebugHandler serves /metrics and, with profiler set, the Go profiler
// under /debug/pprof/, without authentication: it is meant for a listener of
// its own, bound to an address only operators reach. The profiler's cmdline
// page is never served: a command line may hold what its operator typed.
func (m *Metrics) DebugHandler(profiler bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if !profiler {
		return mux
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.Handle("/debug/pprof/cmdline", http.NotFoundHandler())
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
