// Package api is the gateway's REST surface: the seed's /api routes, the
// contract's envelope on every answer, token checks and roles, and the
// /files, /ws and (for admins) /metrics endpoints. routes.go holds the whole route table; each
// resource has its own file.
package api

import (
	"net/http"
	"strings"
)

// Access says who may call a route.
type Access int

// Access levels.
const (
	Public Access = iota // no token (login, health, probes)
	Authed               // any valid token
	Admin                // a token with the admin role
)

// Route is one entry of the route table.
type Route struct {
	Method  string
	Pattern string
	Access  Access
	handler handlerFunc
}

// Routes returns the whole route table. Tests walk it to check access rules.
func (s *Server) Routes() []Route {
	routes := []Route{
		{"POST", "/api/auth/login", Public, s.login},
		{"GET", "/api/health", Public, s.health},
		{"GET", "/livez", Public, s.livez},
		{"GET", "/readyz", Public, s.readyz},
		{"GET", "/api/openapi.json", Public, s.openapiDoc},

		{"GET", "/api/instances", Authed, s.listInstances},
		{"GET", "/api/instances/{id}", Authed, s.getInstance},
		{"PUT", "/api/instances/{id}", Admin, s.putInstance},

		{"GET", "/api/tasks", Authed, s.listTasks},
		{"POST", "/api/tasks", Authed, s.createTask},
		{"GET", "/api/tasks/{id}", Authed, s.getTask},
		{"DELETE", "/api/tasks/{id}", Authed, s.cancelTask},
		{"GET", "/api/tasks/{id}/webhooks", Authed, s.taskWebhooks},
		{"POST", "/api/tasks/{id}/pin", Authed, s.pinTask},
		{"DELETE", "/api/tasks/{id}/pin", Authed, s.unpinTask},

		{"GET", "/api/webhooks", Authed, s.listWebhooks},
		{"POST", "/api/webhooks", Authed, s.createWebhook},
		{"DELETE", "/api/webhooks/{id}", Authed, s.deleteWebhook},

		{"POST", "/api/files/upload", Authed, s.uploadFile},
		{"GET", "/api/files", Authed, s.listFiles},
		{"GET", "/api/files/{id}", Authed, s.getFile},
		{"DELETE", "/api/files/{id}", Authed, s.deleteFile},
		{"POST", "/api/files/{id}/pin", Authed, s.pinFile},
		{"DELETE", "/api/files/{id}/pin", Authed, s.unpinFile},

		{"GET", "/api/config", Admin, s.getConfig},
		{"PUT", "/api/config", Admin, s.putConfig},

		{"GET", "/api/monitor/overview", Authed, s.overview},
		{"GET", "/api/auth/me", Authed, s.me},

		{"GET", "/api/keys", Authed, s.listKeys},
		{"POST", "/api/keys", Authed, s.createKey},
		{"DELETE", "/api/keys/{id}", Authed, s.revokeKey},
	}
	routes = append(routes, Route{"GET", "/api/instances/{id}/catalog", Authed, s.getCatalog})
	if s.deps.RefreshCatalog != nil {
		routes = append(routes, Route{"POST", "/api/instances/{id}/refresh-catalog", Admin, s.refreshCatalog})
	}
	if s.deps.Metrics != nil {
		routes = append(routes, Route{"GET", "/metrics", Admin, s.metrics})
	}
	return routes
}

// metrics is GET /metrics: Prometheus text format, for admins only.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	s.deps.Metrics.ServeHTTP(w, r)
	return nil
}

// Handler builds the HTTP handler: the route table, /ws, /files, the
// dashboard, and envelope answers for unknown routes (404) and wrong
// methods (405).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.Routes() {
		mux.Handle(rt.Method+" "+rt.Pattern, s.guard(rt.Access, RouteScope(rt.Method, rt.Pattern), s.handle(rt.handler)))
	}
	mux.Handle("GET /ws", s.handle(s.serveWS))
	mux.Handle("GET /files/{id}/{name}", s.handle(s.serveFile))
	return s.recoverer(s.fallback(mux))
}

// knownMethods are tried to tell a 405 from a 404.
var knownMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}

// fallback answers requests that no pattern matches with the envelope:
// 405 with Allow when another method would match, else 404.
func (s *Server) fallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		if s.deps.UI != nil && isUIPath(r) {
			s.deps.UI.ServeHTTP(s.envelopeErrors(w, r), r) // a missing asset is a 404 in the envelope
			return
		}
		var allow []string
		for _, m := range knownMethods {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			renderError(w, r, s.log, errorf(http.StatusMethodNotAllowed, "method_not_allowed",
				"%s is not allowed on %s; use %s.", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		renderError(w, r, s.log, errorf(http.StatusNotFound, "route_not_found", "No route %s %s.", r.Method, r.URL.Path))
	})
}

// isUIPath reports whether a request that matched no route belongs to the
// dashboard: a GET outside /api, /files, /ws and /metrics (the probes
// /livez and /readyz are routes, so they never get here).
func isUIPath(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	return !strings.HasPrefix(p, "/api/") && p != "/api" && !strings.HasPrefix(p, "/files/") && p != "/ws" && p != "/metrics"
}
