// Package apptest boots the whole gateway in-process on 127.0.0.1:0 with
// simulated ComfyUI instances, for end-to-end tests over real sockets.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/app"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// Users every Env has: an admin and a plain user.
const (
	AdminUser = "admin"
	AdminPass = "admin-secret-pw"
	User      = "alice"
	UserPass  = "alice-secret-pw"
	User2     = "bob"
	User2Pass = "bob-secret-pw"
)

// Options shape an Env.
type Options struct {
	// Instances is the number of simulated instances (default 2).
	Instances int
	// Sim configures every simulated instance; Log is set by Start if nil.
	Sim comfysim.Options
	// Configure may change the config before the app starts.
	Configure func(*config.Config)
	// DataDir reuses a data dir (default a fresh temp dir).
	DataDir string
	// Sims puts the gateway in front of simulators that already run (for
	// example another Env's: two gateways sharing instances) instead of
	// starting its own; the Env does not close them. SimLog is then the
	// first one's log.
	Sims []*comfysim.Sim
	// Logger receives the gateway's logs (default: discarded, or stderr
	// with COMFYFLEET_TEST_LOG set).
	Logger *slog.Logger
}

// Env is a running gateway with its simulated fleet.
type Env struct {
	T       testing.TB
	Sims    []*comfysim.Sim
	SimLog  *comfysim.Log
	DataDir string
	Config  config.Config
	log     *slog.Logger

	// mu guards app, cancel and done (Restart replaces them).
	mu     sync.Mutex
	app    *app.App
	cancel context.CancelFunc
	done   chan error
}

// Start boots sims and the gateway; everything stops at test cleanup.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Instances == 0 {
		opts.Instances = 2
	}
	if opts.Sim.Log == nil {
		opts.Sim.Log = comfysim.NewLog()
	}
	sims := opts.Sims
	if len(sims) > 0 {
		opts.Sim.Log = sims[0].Log()
	} else {
		var err error
		sims, err = comfysim.StartFleet(opts.Instances, "127.0.0.1:0", opts.Sim)
		if err != nil {
			t.Fatalf("start simulators: %v", err)
		}
		t.Cleanup(func() {
			for _, s := range sims {
				s.Close()
			}
		})
	}
	e := &Env{T: t, Sims: sims, SimLog: opts.Sim.Log, DataDir: opts.DataDir, log: opts.Logger}
	if e.log == nil {
		e.log = logger()
	}
	if e.DataDir == "" {
		e.DataDir = t.TempDir()
	}
	e.Config = baseConfig(t, e.DataDir, sims)
	if opts.Configure != nil {
		opts.Configure(&e.Config)
	}
	e.Config.WithDefaults()
	if err := e.Config.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	e.boot()
	t.Cleanup(e.Stop)
	return e
}

func baseConfig(t testing.TB, dataDir string, sims []*comfysim.Sim) config.Config {
	cfg := config.Config{DataDir: dataDir}
	cfg.Server.Listen = "127.0.0.1:0"
	// Quick probes, with a timeout that a test machine busy with the
	// package's parallel tests under -race still meets: at 100 ms, probes
	// timed out there and instances never came alive.
	cfg.HealthCheck.Interval = config.Millis(250 * time.Millisecond)
	cfg.HealthCheck.Timeout = config.Millis(250 * time.Millisecond)
	cfg.HealthCheck.FailureThreshold = 2
	// Stop drains like SIGTERM, briefly: a test that ends with runs under
	// way does not wait for them.
	cfg.Server.ShutdownGrace = config.Duration(time.Second)
	cfg.Auth.Users = []config.User{
		{Username: AdminUser, Role: "admin", PasswordHash: hash(t, AdminPass)},
		{Username: User, Role: "user", PasswordHash: hash(t, UserPass)},
		{Username: User2, Role: "user", PasswordHash: hash(t, User2Pass)},
	}
	cfg.Auth.LoginRateLimit = 5
	var ports config.Ports
	for _, s := range sims {
		ports = append(ports, Port(s.Addr()))
	}
	cfg.Servers = []config.Server{{ID: "sim", Name: "Simulated box", IP: "127.0.0.1", Ports: ports}}
	return cfg
}

// hash is a cheap bcrypt hash: tests need speed, not strength.
func hash(t testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// Port returns the port of an "ip:port" address.
func Port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (e *Env) boot() {
	e.T.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, e.Config, app.Options{Logger: e.log, Out: io.Discard})
	if err != nil {
		cancel()
		e.T.Fatalf("app.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.mu.Lock()
	e.app, e.cancel, e.done = a, cancel, done
	e.mu.Unlock()
}

func logger() *slog.Logger {
	if os.Getenv("COMFYFLEET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// App is the running gateway.
func (e *Env) App() *app.App {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.app
}

// URL is the gateway's base URL.
func (e *Env) URL() string { return "http://" + e.App().Addr() }

// Stop shuts the gateway down and waits for it (idempotent).
func (e *Env) Stop() {
	e.mu.Lock()
	cancel, done := e.cancel, e.done
	e.cancel = nil
	e.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			e.T.Errorf("app.Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		e.T.Errorf("app did not stop within 20s")
	}
}

// Restart stops the gateway (draining it, as SIGTERM does) and starts it
// again on the same data dir.
func (e *Env) Restart() {
	e.T.Helper()
	e.Stop()
	e.boot()
}

// Crash stops the gateway without draining: its runs stay as they are on
// the instances and in the store, as after a kill.
func (e *Env) Crash() {
	e.T.Helper()
	e.App().SkipDrain()
	e.Stop()
}

// CrashRestart is Crash, then a start on the same data dir.
func (e *Env) CrashRestart() {
	e.T.Helper()
	e.Crash()
	e.boot()
}

// Response is a decoded API answer.
type Response struct {
	Status int
	Raw    []byte
	Body   struct {
		Code    int             `json:"code"`
		Data    json.RawMessage `json:"data"`
		Error   string          `json:"error"`
		Message string          `json:"message"`
	}
}

// Into decodes the envelope's data into v.
func (r *Response) Into(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body.Data, v); err != nil {
		t.Fatalf("decode data %s: %v", r.Body.Data, err)
	}
}

// Do sends a request; body may be nil, []byte (sent as is) or a value sent as JSON.
func (e *Env) Do(method, path, token string, body any) *Response {
	e.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.T.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.URL()+path, rd)
	if err != nil {
		e.T.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req)
}

func (e *Env) send(req *http.Request) *Response {
	e.T.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.T.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	out := &Response{Status: resp.StatusCode}
	out.Raw, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(out.Raw, &out.Body)
	e.checkOpenAPI(req, resp, out.Raw)
	return out
}

// Login returns a token for user, failing the test otherwise.
func (e *Env) Login(user, pass string) string {
	e.T.Helper()
	r := e.Do("POST", "/api/auth/login", "", map[string]string{"username": user, "password": pass})
	if r.Status != http.StatusOK {
		e.T.Fatalf("login %s: %d %s", user, r.Status, r.Raw)
	}
	var v struct {
		Token string `json:"token"`
	}
	r.Into(e.T, &v)
	return v.Token
}

// Eventually waits until cond holds, checking every 10ms, failing after timeout.
func (e *Env) Eventually(timeout time.Duration, what string, cond func() bool) {
	e.T.Helper()
	Eventually(e.T, timeout, what, cond)
}

// Eventually waits until cond holds, checking every 10ms, failing after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
