package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// gatewaySpec is one gateway run.
type gatewaySpec struct {
	// label names the run in progress lines and its data dir.
	label string
	// store is "sqlite" or "redis"; "" means Options.Store.
	store string
	// ports of the simulated instances (one server, 127.0.0.1).
	ports []int
	// addrs are instances elsewhere, as host:port (real ComfyUI servers).
	addrs []string
	// users is the number of plain users (user0001, ...) besides admin.
	users int
	// health is healthCheck.interval (default 5s); the probe timeout is
	// the same, at most 5s.
	health time.Duration
	// scheduler holds extra keys of the scheduler section.
	scheduler map[string]string
	// outputDir is every server's outputDir ("{port}" for each port's).
	outputDir string
	// s3, when set, keeps the gateway's files in an S3 bucket
	// (files.driver s3) instead of its data dir.
	s3 *s3Files
	// env are variables added to the gateway's environment (the S3
	// credentials, which are never put on its command line).
	env []string
}

// s3Files is the files.s3 section of a gateway's config.
type s3Files struct {
	endpoint, bucket, prefix, region string
	// serve is files.s3.serve: "proxy" or "redirect".
	serve string
}

// gateway is a running "comfyfleet serve" child process.
type gateway struct {
	e       *env
	spec    gatewaySpec
	url     string
	dir     string
	logPath string
	cmd     *exec.Cmd
	// exited is closed when the process has exited; waitErr is then set.
	exited  chan struct{}
	waitErr error
	// redisPrefix is the run's key prefix on Redis ("" on SQLite).
	redisPrefix string
	password    string
	admin       *api
	// metricsAddr serves /debug/pprof when profiles are asked for.
	metricsAddr string
	// profiling tracks a profile being taken; stop waits for it.
	profiling sync.WaitGroup
	// mu guards profiled and profilingNow.
	mu sync.Mutex
	// profiled holds the names of the profiles taken or being taken.
	profiled map[string]bool
	// profilingNow says a profile is being taken.
	profilingNow bool
}

// startGateway writes a config, starts the gateway, waits until
// /api/health answers and logs in as admin.
func (e *env) startGateway(ctx context.Context, spec gatewaySpec) (*gateway, error) {
	if spec.store == "" {
		spec.store = e.opts.Store
	}
	if spec.health == 0 {
		spec.health = 5 * time.Second
	}
	n := e.runs.Add(1)
	g := &gateway{e: e, spec: spec, exited: make(chan struct{}), password: randomHex(12)}
	g.dir = filepath.Join(e.root, fmt.Sprintf("%02d-%s", n, spec.label))
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return nil, err
	}
	if spec.store == "redis" {
		g.redisPrefix = "comfyfleet-bench-" + randomHex(6) + ":"
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	g.url = "http://" + addr
	if e.opts.ProfileDir != "" {
		if g.metricsAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	cfg, err := g.config(addr)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(g.dir, "comfyfleet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if err := g.start(cfgPath); err != nil {
		return nil, err
	}
	if err := g.ready(ctx); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

// config renders the gateway's YAML config.
func (g *gateway) config(addr string) (string, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(g.password), bcrypt.MinCost)
	if err != nil {
		return "", err
	}
	s := g.spec
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  listen: %q\ndataDir: %q\n", addr, filepath.Join(g.dir, "data"))
	fmt.Fprintf(&b, "auth:\n  loginRateLimit: 1000\n  users:\n")
	fmt.Fprintf(&b, "    - {username: admin, role: admin, passwordHash: %q}\n", hash)
	for i := range s.users {
		fmt.Fprintf(&b, "    - {username: %s, role: user, passwordHash: %q}\n", userName(i), hash)
	}
	if g.metricsAddr != "" {
		fmt.Fprintf(&b, "metrics:\n  listen: %q\n  pprof: true\n", g.metricsAddr)
	}
	fmt.Fprintf(&b, "store:\n  driver: %s\n", s.store)
	if s.store == "redis" {
		fmt.Fprintf(&b, "  url: %q\n  prefix: %q\n", g.e.opts.RedisURL, g.redisPrefix)
	}
	if f := s.s3; f != nil {
		fmt.Fprintf(&b, "files:\n  driver: s3\n  s3:\n    endpoint: %q\n    bucket: %q\n    prefix: %q\n    serve: %s\n",
			f.endpoint, f.bucket, f.prefix, f.serve)
		if f.region != "" {
			fmt.Fprintf(&b, "    region: %q\n", f.region)
		}
	}
	timeout := min(s.health, 5*time.Second)
	fmt.Fprintf(&b, "healthCheck:\n  interval: %d\n  timeout: %d\n", s.health.Milliseconds(), timeout.Milliseconds())
	if len(s.scheduler) > 0 {
		b.WriteString("scheduler:\n")
		for k, v := range s.scheduler {
			fmt.Fprintf(&b, "  %s: %s\n", k, v)
		}
	}
	servers, err := s.servers()
	if err != nil {
		return "", err
	}
	if len(servers) == 0 {
		b.WriteString("servers: []\n")
		return b.String(), nil
	}
	b.WriteString("servers:\n")
	for i, sv := range servers {
		fmt.Fprintf(&b, "  - id: s%d\n    name: %q\n    ip: %q\n    ports: [%s]\n", i+1, "instances on "+sv.host, sv.host, strings.Join(sv.ports, ", "))
		if s.outputDir != "" {
			fmt.Fprintf(&b, "    outputDir: %q\n", s.outputDir)
		}
	}
	return b.String(), nil
}

// server is one entry of the config's servers: a host and its ports.
type server struct {
	host  string
	ports []string
}

// servers groups the instances by host, in order: the simulated ones on
// 127.0.0.1 first, then addrs.
func (s gatewaySpec) servers() ([]server, error) {
	var out []server
	add := func(host, port string) {
		for i := range out {
			if out[i].host == host {
				out[i].ports = append(out[i].ports, port)
				return
			}
		}
		out = append(out, server{host: host, ports: []string{port}})
	}
	for _, p := range s.ports {
		add("127.0.0.1", fmt.Sprint(p))
	}
	for _, a := range s.addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("bench: instance %q: %w", a, err)
		}
		add(host, port)
	}
	return out, nil
}

func userName(i int) string { return fmt.Sprintf("user%04d", i+1) }

// start runs the process, its output going to gateway.log in its dir.
func (g *gateway) start(cfgPath string) error {
	g.logPath = filepath.Join(g.dir, "gateway.log")
	logf, err := os.Create(g.logPath)
	if err != nil {
		return err
	}
	argv := append(append([]string{}, g.e.opts.Gateway...), "serve", "--config", cfgPath)
	for _, kv := range g.e.opts.GatewaySets {
		argv = append(argv, "--set", kv)
	}
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Env = append(childEnv(), g.spec.env...)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	g.cmd.SysProcAttr = childSysProcAttr()
	if err := g.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start gateway: %w", err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		logf.Close()
		close(g.exited)
	}()
	return nil
}

// childEnv is the bench's environment without COMFYFLEET_ variables, so the
// generated config alone decides.
func childEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COMFYFLEET_") {
			out = append(out, kv)
		}
	}
	return out
}

// ready waits for /api/health, then logs in as admin.
func (g *gateway) ready(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	probe := &api{e: g.e, base: g.url}
	for {
		if probe.health(ctx) == nil {
			break
		}
		select {
		case <-g.exited:
			return fmt.Errorf("gateway exited (%v) before answering; its log:\n%s", g.waitErr, g.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway did not answer /api/health within 60s; its log:\n%s", g.logTail())
		}
	}
	admin, err := g.login(ctx, "admin")
	if err != nil {
		return err
	}
	g.admin = admin
	return nil
}

// login returns a client logged in as username.
func (g *gateway) login(ctx context.Context, username string) (*api, error) {
	a := &api{e: g.e, base: g.url}
	var out struct {
		Token string `json:"token"`
	}
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, username, g.password)
	if err := a.do(ctx, "POST", "/api/auth/login", []byte(body), &out); err != nil {
		return nil, fmt.Errorf("login %s: %w", username, err)
	}
	a.token = out.Token
	return a, nil
}

// logTail is the end of the gateway's log.
func (g *gateway) logTail() string {
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// alive reports whether the process is still running.
func (g *gateway) alive() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// cpu is the process's CPU time so far (user + system).
func (g *gateway) cpu() (time.Duration, error) {
	if !g.alive() {
		ps := g.cmd.ProcessState
		return ps.UserTime() + ps.SystemTime(), nil
	}
	return procCPU(g.cmd.Process.Pid)
}

// mem is the process's resident set size now and at its peak.
func (g *gateway) mem() (rss, peak int64, err error) {
	return procMem(g.cmd.Process.Pid)
}

// stop ends the process with SIGTERM (SIGKILL after 30s) and deletes its
// Redis keys.
func (g *gateway) stop() error {
	g.profiling.Wait()
	var err error
	if g.alive() {
		t0 := time.Now()
		defer func() { g.e.logf("gateway %s stopped in %s", g.spec.label, fmtDur(time.Since(t0))) }()
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(30 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.exited
			err = errors.New("gateway did not stop within 30s of SIGTERM")
		}
	}
	if g.redisPrefix != "" {
		if derr := deletePrefix(g.e.opts.RedisURL, g.redisPrefix); derr != nil {
			g.e.logf("delete Redis keys %s*: %v", g.redisPrefix, derr)
		}
	}
	return err
}

// profile takes a CPU profile of Options.ProfileTime in the background,
// into Options.ProfileDir/<label><suffix>.pprof, when profiles are asked for
// and none of that name was taken yet (a scenario that measures several
// windows with one gateway gets the first). While another profile is being
// taken it does nothing (the process has one CPU profiler), so a later
// window of the same name may take it.
func (g *gateway) profile(ctx context.Context, suffix string) {
	if g.metricsAddr == "" || !g.claimProfile(suffix) {
		return
	}
	path := filepath.Join(g.e.opts.ProfileDir, g.spec.label+suffix+".pprof")
	secs := int(g.e.opts.ProfileTime.Round(time.Second) / time.Second)
	g.profiling.Go(func() {
		defer func() {
			g.mu.Lock()
			g.profilingNow = false
			g.mu.Unlock()
		}()
		u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", g.metricsAddr, max(secs, 1))
		if err := g.e.download(ctx, u, path); err != nil {
			g.e.logf("CPU profile of %s: %v", g.spec.label, err)
			return
		}
		g.e.logf("CPU profile of %s%s: %s", g.spec.label, suffix, path)
	})
}

// claimProfile reports whether a profile named suffix may start now: none
// of that name was asked for yet and none is being taken. It records it.
func (g *gateway) claimProfile(suffix string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.profiled[suffix] || g.profilingNow {
		return false
	}
	if g.profiled == nil {
		g.profiled = map[string]bool{}
	}
	g.profiled[suffix], g.profilingNow = true, true
	return true
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
