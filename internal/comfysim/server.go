package comfysim

import (
	"bytes"
	"errors"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The HTTP side of PromptServer. Every route is served at /X and /api/X
// (server.py add_routes); responses follow aiohttp: JSON with
// "application/json; charset=utf-8", bare statuses with an empty
// application/octet-stream body, and plain-text 500/404/405 pages.

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

type methods map[string]handlerFunc

const (
	http500 = http.StatusInternalServerError
	body500 = "500 Internal Server Error\n\nServer got itself in trouble"
)

var discardLogger = log.New(io.Discard, "", 0)

// routes is the whole route table.
func (p *proc) routes() http.Handler {
	table := []struct {
		path string
		m    methods
	}{
		{"/ws", methods{"GET": p.serveWS}},
		{"/prompt", methods{"GET": p.getPrompt, "POST": p.postPrompt}},
		{"/queue", methods{"GET": p.getQueue, "POST": p.postQueue}},
		{"/interrupt", methods{"POST": p.postInterrupt}},
		{"/free", methods{"POST": p.postFree}},
		{"/history", methods{"GET": p.getHistory, "POST": p.postHistory}},
		{"/history/{prompt_id}", methods{"GET": p.getHistoryItem}},
		{"/system_stats", methods{"GET": p.getSystemStats}},
		{"/object_info", methods{"GET": p.getObjectInfo}},
		{"/object_info/{node_class}", methods{"GET": p.getObjectInfoClass}},
		{"/features", methods{"GET": p.getFeatures}},
		{"/embeddings", methods{"GET": p.getEmbeddings}},
		{"/models", methods{"GET": p.getModels}},
		{"/models/{folder}", methods{"GET": p.getModelFolder}},
		{"/extensions", methods{"GET": p.getExtensions}},
		{"/view", methods{"GET": p.getView}},
		{"/upload/image", methods{"POST": p.postUploadImage}},
		{"/{$}", methods{"GET": p.getIndex}},
	}
	mux := http.NewServeMux()
	for _, rt := range table {
		h := dispatch(rt.m)
		mux.Handle(rt.path, h)
		mux.Handle("/api"+rt.path, h)
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusNotFound, "404: Not Found")
	}))
	return p.middleware(mux)
}

// dispatch picks the handler by method (HEAD runs GET) and renders a
// handler error as aiohttp's 500 page.
func dispatch(m methods) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		h, ok := m[method]
		if !ok {
			allow := make([]string, 0, len(m))
			for k := range m {
				allow = append(allow, k)
			}
			w.Header().Set("Allow", strings.Join(allow, ","))
			writeText(w, http.StatusMethodNotAllowed, "405: Method Not Allowed")
			return
		}
		if err := h(w, r); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeText(w, http.StatusRequestEntityTooLarge, "Maximum request body size "+strconv.FormatInt(tooBig.Limit, 10)+" exceeded")
				return
			}
			writeText(w, http500, body500)
		}
	})
}

// middleware tracks requests for shutdown, applies aiohttp's origin check
// and OPTIONS answer, and injects HTTP faults.
func (p *proc) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.track() {
			panic(http.ErrAbortHandler) // the instance is going away: cut the connection
		}
		defer p.reqWG.Done()
		w.Header().Set("Server", "Python/3.11 aiohttp/3.12.15")
		if crossOrigin(r) {
			writeEmpty(w, http.StatusForbidden)
			return
		}
		if r.Method == http.MethodOptions {
			writeEmpty(w, http.StatusOK)
			return
		}
		if f, ok := p.sim.httpFault(r.Method, r.URL.Path); ok {
			applyFault(f, next, w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// applyFault answers a request chosen by an HTTPFault.
func applyFault(f HTTPFault, next http.Handler, w http.ResponseWriter, r *http.Request) {
	if f.Hold != nil && !isWebSocket(r) {
		held := &heldWriter{h: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(held, r)
		select {
		case <-f.Hold:
		case <-r.Context().Done():
			return
		}
		maps.Copy(w.Header(), held.h)
		w.WriteHeader(held.status)
		_, _ = w.Write(held.body.Bytes())
		return
	}
	if f.After && !isWebSocket(r) {
		next.ServeHTTP(&discardWriter{h: http.Header{}}, r)
	}
	if f.Drop {
		panic(http.ErrAbortHandler)
	}
	if f.Stall {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("\x89PNG"))
		_ = http.NewResponseController(w).Flush()
		<-r.Context().Done()
		return
	}
	if f.Status == http500 {
		writeText(w, http500, body500)
		return
	}
	writeText(w, f.Status, strconv.Itoa(f.Status)+": "+http.StatusText(f.Status))
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// heldWriter keeps a response to send later (HTTPFault.Hold).
type heldWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (h *heldWriter) Header() http.Header         { return h.h }
func (h *heldWriter) Write(b []byte) (int, error) { return h.body.Write(b) }
func (h *heldWriter) WriteHeader(status int)      { h.status = status }

// discardWriter swallows a response the client must not see.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// crossOrigin is server.py's origin_only_middleware: 403 when Host is a
// loopback name and Origin names another host.
func crossOrigin(r *http.Request) bool {
	origin, ok := r.Header["Origin"]
	if !ok || r.Host == "" || len(origin) == 0 {
		return false
	}
	hostDomain := strings.ToLower(r.Host)
	parsed, err := url.Parse(origin[0])
	if err != nil {
		return false
	}
	originDomain := strings.ToLower(parsed.Host)
	host, err := url.Parse("//" + hostDomain)
	if err != nil {
		return false
	}
	if parsed.Port() == "" {
		hostDomain = host.Hostname()
	}
	if host.Port() == "" {
		originDomain = strings.ToLower(parsed.Hostname())
	}
	return isLoopback(host.Hostname()) && hostDomain != "" && originDomain != "" && hostDomain != originDomain
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writePy writes a JSON body already encoded in Python layout.
func writePy(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeEmpty is web.Response(status=...): no body.
func writeEmpty(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
}

func writeText(w http.ResponseWriter, status int, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(text)))
	w.WriteHeader(status)
	io.WriteString(w, text)
}

// readBody reads a request body up to the upload limit.
func (p *proc) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, p.sim.opts.MaxUploadSize))
}

// query parses the query string as aiohttp does: only "&" separates pairs
// (Go's URL.Query drops pairs holding ";", such as preview=jpeg;50).
func query(r *http.Request) url.Values {
	v := url.Values{}
	for _, pair := range strings.Split(r.URL.RawQuery, "&") {
		if pair == "" {
			continue
		}
		k, val, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(val)
		if err1 == nil && err2 == nil {
			v.Add(k, val)
		}
	}
	return v
}
