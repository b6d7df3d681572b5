package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/auth"
	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/eta"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/logging"
	"github.com/comfyfleet/comfyfleet/internal/push"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
	"github.com/comfyfleet/comfyfleet/internal/webhook"
)

// ConfigService owns the live configuration.
type ConfigService interface {
	// Current returns the live config.
	Current() config.Config
	// Update validates, merges, applies and persists a PUT /api/config body.
	// Validation errors are *config.FieldError (or wrap one).
	Update(ctx context.Context, patch []byte) (config.Config, error)
}

// StatsService gives the monitor's throughput and latency figures.
type StatsService interface {
	Stats() map[string]any
}

// Deps are the components the API serves.
type Deps struct {
	Log    *slog.Logger
	Store  store.Store
	Auth   *auth.Authenticator
	Fleet  *fleet.Fleet
	Config ConfigService
	Blob   blob.Store
	// Links, when set, makes GET /files/... a redirect to a URL of the
	// object store (files.s3.serve "redirect") instead of streaming Blob.
	Links blob.Presigner
	Hub   *push.Hub
	// Stats is optional.
	Stats StatsService
	// UI serves the dashboard for GET requests outside /api; optional.
	UI http.Handler
	// Metrics serves GET /metrics to admins; optional (nil: no such route,
	// as when metrics have a listener of their own).
	Metrics http.Handler
	// FilesWritable reports whether the file store takes writes, and if not
	// why; optional (nil: always writable). Shown on /api/health.
	FilesWritable func() (bool, string)
	// RefreshCatalog reads an instance's node catalogue again and returns its
	// hash (store.ErrNotFound for an unknown id); optional (nil: no
	// POST /api/instances/{id}/refresh-catalog).
	RefreshCatalog func(ctx context.Context, id string) (string, error)
	// Ready reports whether this replica should get traffic, with the
	// state of each check by name (GET /readyz); optional (nil: ready).
	Ready func(ctx context.Context) (bool, map[string]string)
	// Estimate estimates when pending tasks start and finish, by id
	// (eta.Estimator); optional (nil: no estimates). A task it leaves out
	// has none.
	Estimate func(ctx context.Context, now time.Time, tasks []*task.Task) (map[string]eta.Estimate, error)
	// InsertTask inserts a submitted task; optional (nil: Store.TaskInsert).
	// The dispatcher's claims the task for a ready instance in the same
	// store step (dispatch.Dispatcher.InsertTask).
	InsertTask func(ctx context.Context, p *store.TaskInsertParams) (*task.Task, error)
	// Webhooks is the policy webhook URLs are checked against when registered.
	Webhooks webhook.Policy
	// Now is injected for tests; default time.Now.
	Now func() time.Time
}

// Server is the REST API.
type Server struct {
	deps Deps
	log  *slog.Logger
	now  func() time.Time
	// keyUses spaces out the writes of API keys' last-used times.
	keyUses keyUses
}

// New returns the API server.
func New(d Deps) *Server {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Server{deps: d, log: d.Log, now: d.Now}
}

// Fixed body limits of the routes an operator needs to get back in: no
// setting changes them, so no setting can lock anyone out.
const (
	// loginBodyLimit bounds POST /api/auth/login (a username of at most 64
	// characters and a password of at most 72 bytes).
	loginBodyLimit = 16 << 10
	// configBodyLimit bounds PUT /api/config: 1024 instances fit many times over.
	configBodyLimit = 1 << 20
)

// maxBody is the configured limit of JSON bodies, never under
// config.MinBodyBytes.
func (s *Server) maxBody() int64 {
	return max(s.deps.Config.Current().Server.MaxBodyBytes, config.MinBodyBytes)
}

// guard checks the token, role and (for an API key) scope a route needs
// and puts the claims in the request context.
func (s *Server) guard(access Access, scope string, next http.Handler) http.Handler {
	if access == Public {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := s.authenticate(r, false)
		if err != nil {
			if !errors.Is(err, auth.ErrNoToken) && !errors.Is(err, auth.ErrBadToken) {
				renderError(w, r, s.log, err) // the store is down: 503, not "log in again"
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="comfyfleet"`)
			renderError(w, r, s.log, authError(err))
			return
		}
		if access == Admin && !claims.IsAdmin() {
			renderError(w, r, s.log, errForbidden)
			return
		}
		if !claims.Allows(scope) {
			renderError(w, r, s.log, scopeError(scope))
			return
		}
		logging.NoteUser(r.Context(), claims.Username)
		next.ServeHTTP(w, r.WithContext(auth.WithClaims(r.Context(), claims)))
	})
}

// scopeError is the 403 of an API key that lacks the scope a route needs.
func scopeError(scope string) *Error {
	e := errorf(http.StatusForbidden, "insufficient_scope", "This API key lacks the scope %q.", scope)
	e.Data = map[string]string{"scope": scope}
	return e
}

func authError(err error) *Error {
	if errors.Is(err, auth.ErrNoToken) {
		return errorf(http.StatusUnauthorized, "unauthorized", "A bearer token is required; log in at POST /api/auth/login.")
	}
	return errorf(http.StatusUnauthorized, "invalid_token", "The token is invalid or expired; log in again.")
}

// claims returns the caller's claims (set by guard).
func claims(r *http.Request) *auth.Claims {
	c, _ := auth.ClaimsFrom(r.Context())
	return c
}

// SetHub sets the push hub after construction (the hub's snapshot reads
// the API's overview, so the two are built in turn).
func (s *Server) SetHub(h *push.Hub) { s.deps.Hub = h }
