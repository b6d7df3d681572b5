// Package app wires ComfyFleet's components into one running gateway: the
// store, auth, the fleet and its health checker, the dispatcher, the push
// hub, the HTTP API and the metrics. Run serves on a given listener so tests
// boot the whole service in-process on 127.0.0.1:0.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/comfyfleet/comfyfleet/internal/api"
	"github.com/comfyfleet/comfyfleet/internal/buildinfo"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/dispatch"
	"github.com/comfyfleet/comfyfleet/internal/eta"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/health"
	"github.com/comfyfleet/comfyfleet/internal/logging"
	"github.com/comfyfleet/comfyfleet/internal/metrics"
	"github.com/comfyfleet/comfyfleet/internal/push"
	"github.com/comfyfleet/comfyfleet/internal/retention"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/webhook"
)

// Options are what the caller provides besides the config.
type Options struct {
	// Listener serves the API; nil listens on cfg.Server.Listen.
	Listener net.Listener
	Logger   *slog.Logger
	// Out receives the one-time notices (a generated admin password).
	Out io.Writer
	// UI serves the dashboard; optional.
	UI http.Handler
}

// App is a running gateway.
type App struct {
	cfg      *configService
	log      *slog.Logger
	ln       net.Listener
	store    store.Store
	fleet    *fleet.Fleet
	checker  *health.Checker
	dispatch *dispatch.Dispatcher
	hub      *push.Hub
	api      *api.Server
	http     *http.Server
	replica  string
	metrics  *metrics.Metrics
	// debug serves /metrics (and /debug/pprof/ with metrics.pprof) on
	// debugLn when metrics.listen is set; nil otherwise.
	debug   *http.Server
	debugLn net.Listener
	// catalogs reads catalogues when an instance's socket connects again.
	catalogs *catalogReader
	// draining turns GET /readyz false (SetDraining).
	draining atomic.Bool
	// eta learns run durations and estimates pending tasks.
	eta *eta.Estimator
	// webhooks sends the queued webhook deliveries.
	webhooks *webhook.Deliverer
	// pruner deletes finished tasks and files past their retention.
	pruner *retention.Pruner
	// skipDrain: the next shutdown stops at once (SkipDrain).
	skipDrain atomic.Bool
}

// New builds the gateway: opens the store, applies the persisted runtime
// config, loads users and secrets, and registers the instances. Run starts it.
func New(ctx context.Context, cfg config.Config, opts Options) (*App, error) {
	a := &App{log: opts.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	if err := a.makeDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	ln, err := listen(opts.Listener, cfg.Server.Listen)
	if err != nil {
		return nil, err
	}
	a.ln = ln
	derivedBase := cfg.Server.PublicBaseURL == "" || cfg.Server.PublicBaseURL == config.BaseURLFor(cfg.Server.Listen)
	if cfg.Server.PublicBaseURL == "" {
		cfg.Server.PublicBaseURL = config.BaseURLFor(ln.Addr().String())
	}
	if cfg.Metrics.Listen != "" {
		if a.debugLn, err = listen(nil, cfg.Metrics.Listen); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if derivedBase && cfg.Store.Driver == "redis" {
		a.log.WarnContext(ctx, "server.publicBaseUrl is not set: this replica's file URLs name its own address; "+
			"set it to the address clients use for every replica (a load balancer) so that a URL works on any; "+
			"REST and /ws render them for the replica that answers", "public_base_url", cfg.Server.PublicBaseURL)
	}
	if err := a.build(ctx, cfg, opts); err != nil {
		ln.Close()
		if a.debugLn != nil {
			a.debugLn.Close()
		}
		if a.store != nil {
			a.store.Close()
		}
		return nil, err
	}
	return a, nil
}

// makeDataDir creates the data dir for the gateway's user only (0700): it
// holds the database, the signing secret and the admin password's hash.
// An existing one open to others is left as it is, with a warning (its
// files are private anyway).
func (a *App) makeDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("app: create data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("app: data dir: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		a.log.Warn("the data dir is open to other users; chmod 700 it", "data_dir", dir, "mode", perm.String())
	}
	return nil
}

func listen(ln net.Listener, addr string) (net.Listener, error) {
	if ln != nil {
		return ln, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("app: listen on %s: %w", addr, err)
	}
	return l, nil
}

func (a *App) build(ctx context.Context, cfg config.Config, opts Options) error {
	// The store also queues the webhook deliveries of the task events it
	// logs, in the step that logs them.
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	a.store = st
	a.warnStore(ctx)
	base := cfg
	if cfg, err = a.applyRuntime(ctx, cfg); err != nil {
		return err
	}
	if a.replica, err = replicaID(cfg); err != nil {
		return err
	}
	authn, secret, err := a.buildAuth(cfg, opts.Out)
	if err != nil {
		return err
	}
	bl, err := a.openBlob(ctx, cfg)
	if err != nil {
		return err
	}
	a.fleet = fleet.New(st, a.log)
	if _, _, err := a.fleet.Set(ctx, cfg.Instances()); err != nil {
		return err
	}
	prober := newProber()
	a.checker = health.New(a.fleet, st, prober, a.replica, healthSettings(cfg), a.log)
	a.checker.SetWorkProber(prober)
	a.checker.OnUp(a.refreshCatalog)
	a.catalogs = newCatalogReader()
	a.metrics = metrics.New(a.log)
	a.eta = eta.New(st, a.instanceIDs)
	a.dispatch = dispatch.New(dispatch.Options{
		Store: st, Fleet: a.fleet, Blob: bl, Log: a.log, Replica: a.replica,
		ClientID: dispatch.ClientIDPrefix + a.replica, FileIDKey: secret, Settings: dispatchSettings(cfg),
		LeaseTTL:  time.Duration(cfg.Store.LeaseTTL),
		Metrics:   a.metrics,
		Reroute:   a.reroute,
		OnConnect: func(id string) { a.catalogs.connect(id) },
		OnRunEnd:  a.runEnded,
	})
	a.pruner = retention.New(retention.Options{Store: st, Blob: bl, Log: a.log, Counter: a.metrics}, retentionSettings(cfg))
	a.cfg = newConfigService(base, cfg, st, a)
	hooks := webhookSettings(cfg.Webhooks)
	a.webhooks = webhook.NewDeliverer(st, a.replica, hooks, a.log)
	deps := api.Deps{
		Log: a.log, Store: st, Auth: authn, Fleet: a.fleet, Config: a.cfg, Blob: bl, Links: fileLinks(cfg, bl), UI: opts.UI,
		FilesWritable: a.dispatch.FilesWritable, RefreshCatalog: a.refreshCatalogID, InsertTask: a.dispatch.InsertTask,
		Ready:    a.readiness,
		Estimate: a.eta.Estimate,
		Webhooks: hooks.Policy,
	}
	if a.debugLn == nil {
		deps.Metrics = a.metrics.Handler() // on the API's listener, admins only
	}
	a.api = api.New(deps)
	// A generous per-client queue: an admin dashboard follows every task of
	// every replica, in bursts when a replica adopts a dead one's instances.
	a.hub = push.NewHub(st, push.Options{
		Logger: a.log, Snapshot: a.api.GlobalStatus, SendBuffer: 4096, OnDrop: a.metrics.WSDropped,
		MaxConns: cfg.Server.WSMaxConns, MaxConnsPerUser: cfg.Server.WSMaxConnsPerUser,
		EventData: a.api.EventData,
	})
	a.api.SetHub(a.hub)
	a.metrics.Watch(metrics.Sources{Tasks: st.TaskCounts, Instances: a.fleet.Views, WSClients: a.hub.Clients})
	a.http = a.server(cfg.Server, logging.Requests(a.log, a.metrics.InstrumentHTTP(a.api.Handler())))
	if a.debugLn != nil {
		a.debug = a.server(cfg.Server, a.metrics.DebugHandler(cfg.Metrics.Pprof))
	}
	return nil
}

// server is an HTTP server whose every connection is bounded in time: an
// idle or slow client cannot hold a socket for good. Uploads and downloads
// extend their own deadlines (api), and /ws sessions clear them (push).
func (a *App) server(c config.HTTP, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Duration(c.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(c.ReadTimeout),
		WriteTimeout:      time.Duration(c.WriteTimeout),
		IdleTimeout:       time.Duration(c.IdleTimeout),
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// replicaID is the configured id, or one generated once and kept in the
// data dir so a restart resumes its own leases. It also names the gateway
// towards ComfyUI: the WebSocket client id is "comfyfleet-<replica id>", one
// per gateway process, because ComfyUI keeps one socket per client id and
// silently detaches the older one: two gateways (or replicas) sharing an id
// would make each other deaf. Kept across restarts, it brings a restarted
// gateway its own prompts' events again.
func replicaID(cfg config.Config) (string, error) {
	if cfg.Server.ReplicaID != "" {
		return cfg.Server.ReplicaID, nil
	}
	path := filepath.Join(cfg.DataDir, "replica-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 8)
	_, _ = rand.Read(buf)
	id := "replica-" + hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("app: keep replica id: %w", err)
	}
	return id, nil
}

// URL is the gateway's base URL.
func (a *App) URL() string { return a.cfg.Current().Server.PublicBaseURL }

// Addr is the address the API listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Replica is this process's replica id.
func (a *App) Replica() string { return a.replica }

// MetricsAddr is the address of the metrics listener, "" when metrics are
// served on the API's listener.
func (a *App) MetricsAddr() string {
	if a.debugLn == nil {
		return ""
	}
	return a.debugLn.Addr().String()
}

// Run serves until ctx ends, then shuts down within server.shutdownGrace
// (shutdown): readiness turns false, the dispatcher drains (no new claim,
// prefetched prompts back to the queue, running tasks may finish), then
// the HTTP servers stop, the background components stop (handing back the
// tasks still running), and the store closes.
func (a *App) Run(ctx context.Context) error {
	defer a.store.Close()
	bg, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBG()
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { return a.hub.Run(gctx) })
	g.Go(func() error { return a.checker.Run(gctx) })
	g.Go(func() error { return a.dispatch.Run(gctx) })
	g.Go(func() error { return a.webhooks.Run(gctx) })
	g.Go(func() error { return a.pruner.Run(gctx) })
	g.Go(func() error {
		a.catalogs.run(gctx, a.refreshCatalogID, func(ctx context.Context, id string, err error) {
			a.log.WarnContext(ctx, "read catalog after reconnect failed", "instance_id", id, "err", err)
		})
		return nil
	})
	serveErr := make(chan error, 2)
	go func() { serveErr <- a.http.Serve(a.ln) }()
	if a.debug != nil {
		go func() { serveErr <- a.debug.Serve(a.debugLn) }()
	}
	a.log.Info("comfyfleet serving", "version", buildinfo.Get().Version, "revision", buildinfo.Get().ShortRevision(), "addr", a.Addr(), "metrics_addr", a.MetricsAddr(), "store", a.store.Driver(),
		"replica", a.replica, "instances", len(a.fleet.Instances()))

	var err error
	deadline := time.Now().Add(10 * time.Second)
	select {
	case <-ctx.Done():
		if !a.skipDrain.Load() {
			deadline = a.drain()
		}
	case <-gctx.Done():
		err = g.Wait()
	case err = <-serveErr:
	}
	a.stopHTTP(deadline)
	cancelBG()
	if werr := g.Wait(); err == nil && werr != nil && !errors.Is(werr, context.Canceled) {
		err = werr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// stopHTTP lets the requests under way finish, for half the time left
// before deadline at most, then cuts the connections still open (a client
// that never finishes its request holds one open until its read timeout):
// the components stopped after it always keep the other half to hand back
// their runs, and the store to close.
func (a *App) stopHTTP(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Until(deadline)/2))
	defer cancel()
	for _, srv := range []*http.Server{a.http, a.debug} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			a.log.Warn("shutting down: HTTP requests still open; closing their connections", "err", err)
			_ = srv.Close()
		}
	}
}

func webhookSettings(w config.Webhooks) webhook.Settings {
	return webhook.Settings{
		Timeout: time.Duration(w.Timeout), RetryFor: time.Duration(w.RetryFor),
		MinBackoff: time.Duration(w.MinBackoff), MaxBackoff: time.Duration(w.MaxBackoff), Workers: w.Workers,
		Policy: webhook.Policy{AllowPrivate: w.AllowPrivate, Allowed: w.AllowedNetworks},
	}
}

func retentionSettings(cfg config.Config) retention.Settings {
	r := cfg.Retention
	return retention.Settings{
		Tasks: time.Duration(r.Tasks), Files: time.Duration(r.Files),
		Interval: time.Duration(r.Interval), Batch: r.Batch,
	}
}

func healthSettings(cfg config.Config) health.Settings {
	probeWorkflow, _ := cfg.HealthCheck.ProbeJSON() // checked by Validate
	return health.Settings{
		Interval:         time.Duration(cfg.HealthCheck.Interval),
		Timeout:          time.Duration(cfg.HealthCheck.Timeout),
		FailureThreshold: cfg.HealthCheck.FailureThreshold,
		DrainCooldown:    time.Duration(cfg.HealthCheck.DrainCooldown),
		ProbeWorkflow:    probeWorkflow,
		ProbeTimeout:     time.Duration(cfg.HealthCheck.ProbeTimeout),
	}
}

func dispatchSettings(cfg config.Config) dispatch.Settings {
	return dispatch.Settings{
		TaskTimeout:    time.Duration(cfg.Scheduler.TaskTimeout),
		MaxAttempts:    cfg.Scheduler.MaxAttempts,
		PublicBaseURL:  cfg.Server.PublicBaseURL,
		WarmWindow:     warmWindow(cfg.Scheduler),
		InterruptGrace: time.Duration(cfg.Scheduler.InterruptGrace),
		Prefetch:       *cfg.Scheduler.Prefetch,
		MaxOutputBytes: cfg.Files.MaxOutputBytes,
		OutputTimeout:  time.Duration(cfg.Files.OutputTimeout),
	}
}

// warmWindow is the dispatcher's warm window: none for FIFO placement.
func warmWindow(s config.Scheduler) time.Duration {
	if s.Placement == config.PlacementFIFO {
		return 0
	}
	return time.Duration(s.WarmWindow)
}

// instanceIDs lists the configured instances' ids, in config order.
func (a *App) instanceIDs() []string {
	list := a.fleet.Instances()
	ids := make([]string, len(list))
	for i, in := range list {
		ids[i] = in.ID
	}
	return ids
}

// Routes returns the API's route table (tests walk it).
func (a *App) Routes() []api.Route { return a.api.Routes() }
