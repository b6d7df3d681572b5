package web_test

// The harness of the browser tests: the demo setup booted in-process (the
// gateway on the embedded store with simulated ComfyUI instances), one
// headless Chromium shared by the tests (a tab each), screenshots as test
// artefacts, and helpers that wait on DOM conditions (never on sleeps).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/comfyfleet/comfyfleet/internal/app"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/web"
)

// defaultChromium is where Debian's chromium package puts the browser
// (.ci/install-browser installs it). COMFYFLEET_CHROMIUM overrides it.
const defaultChromium = "/usr/bin/chromium"

var browser struct {
	once    sync.Once
	path    string
	err     error
	dataDir string
	alloc   context.Context
	cancelA context.CancelFunc
	root    context.Context
	cancelR context.CancelFunc
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancelR != nil {
		browser.cancelR()
		browser.cancelA()
	}
	if browser.dataDir != "" {
		_ = os.RemoveAll(browser.dataDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func chromiumPath() string {
	if p := os.Getenv("COMFYFLEET_CHROMIUM"); p != "" {
		return p
	}
	return defaultChromium
}

// inCI reports whether the tests run in CI, where a missing browser is a
// failure rather than a skip.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "0" && v != "false"
}

// startBrowser starts the shared headless Chromium once.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		browser.path = chromiumPath()
		if _, err := os.Stat(browser.path); err != nil {
			browser.err = fmt.Errorf("no Chromium at %s (run .ci/install-browser, or set COMFYFLEET_CHROMIUM): %w", browser.path, err)
			return
		}
		dir, err := os.MkdirTemp("", "comfyfleet-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		browser.dataDir = dir
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(browser.path),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("no-default-browser-check", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("hide-scrollbars", true),
			chromedp.Flag("mute-audio", true),
			chromedp.Flag("force-color-profile", "srgb"),
			chromedp.UserDataDir(dir),
			chromedp.WindowSize(1280, 900),
		}
		browser.alloc, browser.cancelA = chromedp.NewExecAllocator(context.Background(), opts...)
		browser.root, browser.cancelR = chromedp.NewContext(browser.alloc)
		// Start the browser now. This must run on the root context itself:
		// the context of the first run owns the browser, which closes when
		// that context ends.
		if err := chromedp.Do(browser.root, chromedp.Navigate("about:blank")); err != nil {
			browser.err = fmt.Errorf("start Chromium %s: %w", browser.path, err)
		}
	})
	if browser.err != nil {
		if inCI() {
			t.Fatalf("browser tests need Chromium in CI: %v", browser.err)
		}
		t.Skipf("skipping browser test: %v", browser.err)
	}
	return browser.root
}

// page is one browser tab on one demo gateway.
type page struct {
	t    *testing.T
	ctx  context.Context
	demo *demo

	mu   sync.Mutex
	errs []string
}

// newPage opens a tab (1280x900 unless resized) that fails the test on any
// uncaught exception or console.error of the dashboard.
func newPage(t *testing.T, d *demo) *page {
	t.Helper()
	root := startBrowser(t)
	ctx, cancel := chromedp.NewContext(root)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelT)
	p := &page{t: t, ctx: ctx, demo: d}
	if err := chromedp.Listen(ctx, p.onEvent); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	p.do(chromedp.EmulateViewport(1280, 900))
	// Reduced motion: no transitions, so screenshots show final states.
	p.emulateMedia("light")
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.errs) > 0 {
			t.Errorf("the dashboard logged errors:\n  %s", strings.Join(p.errs, "\n  "))
		}
	})
	return p
}

// emulateMedia sets the colour scheme ("light" or "dark") and asks for
// reduced motion.
func (p *page) emulateMedia(scheme string) {
	p.t.Helper()
	p.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{
				{Name: "prefers-color-scheme", Value: scheme},
				{Name: "prefers-reduced-motion", Value: "reduce"},
			},
		})
		return err
	}))
}

func (p *page) onEvent(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		p.mu.Lock()
		p.errs = append(p.errs, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		p.mu.Unlock()
	case *runtime.EventConsoleAPICalled:
		if ev.Type != "error" {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, string(a.Value))
			}
		}
		p.mu.Lock()
		p.errs = append(p.errs, "console.error: "+strings.Join(parts, " "))
		p.mu.Unlock()
	}
}

// do runs actions, failing the test with the step that failed.
func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.shot("failure")
		p.t.Fatalf("browser: %v", err)
	}
}

// waitJS polls a JavaScript condition until it is truthy. A condition
// that throws (an element not there yet) counts as false.
func (p *page) waitJS(what, expr string, timeout time.Duration) {
	p.t.Helper()
	guarded := "(() => { try { return (" + expr + "); } catch (e) { return false; } })()"
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](guarded, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		p.shot("failure")
		p.t.Fatalf("waiting for %s (%s): %v\npage text: %s", what, expr, err, p.text("body"))
	}
}

// eval evaluates a JavaScript expression into T.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is the text of the first element matching the CSS selector, or "".
func (p *page) text(sel string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)?.innerText || '')`, sel)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(v) > 2000 {
		v = v[:2000] + "…"
	}
	return v
}

// open navigates to a dashboard route ("#/tasks").
func (p *page) open(route string) {
	p.t.Helper()
	p.do(chromedp.Navigate(p.demo.URL + "/" + route))
}

// goRoute changes the hash in the running app (no reload).
func (p *page) goRoute(route string) {
	p.t.Helper()
	eval[any](p, fmt.Sprintf(`location.hash = %q`, route))
}

// login logs in through the form and waits for the app.
func (p *page) login(user, pass string) {
	p.t.Helper()
	p.do(
		chromedp.WaitVisible(chromedp.CSS("#login-username")),
		chromedp.SendKeys(chromedp.CSS("#login-username"), user),
		chromedp.SendKeys(chromedp.CSS("#login-password"), pass),
		chromedp.Click(chromedp.CSS("#login-submit")),
	)
	p.waitJS("the app after login", `!!document.querySelector('#main') && !document.querySelector('#login-username')`, 20*time.Second)
}

// click clicks the first element matching a CSS selector once it is visible.
func (p *page) click(sel string) {
	p.t.Helper()
	// A view that re-renders on a live event (instance_status, say) can
	// replace the element between the browser finding it and clicking it:
	// the node id is then gone, and the click is tried again on the new one.
	for range 4 {
		err := chromedp.Do(p.ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "Could not find node with given id") {
			p.shot("failure")
			p.t.Fatalf("browser: %v", err)
		}
		p.t.Logf("click %s: the element was replaced; again", sel)
	}
	p.do(chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// confirm clicks the confirm button of the open dialog.
func (p *page) confirm() {
	p.t.Helper()
	p.click(`dialog[open] [data-action="confirm"]`)
	p.waitJS("the dialog to close", `!document.querySelector('dialog[open]')`, 5*time.Second)
}

// shot saves a full-page PNG screenshot as a test artefact.
func (p *page) shot(name string) string {
	p.t.Helper()
	dir := artifactsDir(p.t)
	_ = chromedp.Do(p.ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	b, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	file := filepath.Join(dir, sanitize(p.t.Name())+"-"+name+".png")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		p.t.Logf("write screenshot: %v", err)
		return ""
	}
	p.t.Logf("screenshot: %s", file)
	return file
}

var artifactsOnce sync.Once

// artifactsDir is $ARTIFACTS_DIR, or <repo>/artifacts/web (ignored by git).
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		abs, err := filepath.Abs(filepath.Join("..", "..", "artifacts", "web"))
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
	}
	artifactsOnce.Do(func() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("artifacts dir: %v", err)
		}
	})
	return dir
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == ':' {
			return '_'
		}
		return r
	}, s)
}

// ---------- the demo gateway ----------

// demo is the gateway with simulated ComfyUI instances, as `comfyfleet demo`.
type demo struct {
	t     *testing.T
	URL   string
	Sims  []*comfysim.Sim
	token string
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDemo boots n simulated instances and the gateway in demo mode
// (admin / admin123), serving the dashboard. Everything stops at cleanup.
func startDemo(t *testing.T, n int, opts comfysim.Options) *demo {
	t.Helper()
	return startDemoWith(t, n, opts, nil)
}

// startDemoWith is startDemo with a change to the config before it boots.
func startDemoWith(t *testing.T, n int, opts comfysim.Options, change func(*config.Config)) *demo {
	t.Helper()
	startBrowser(t) // skip (or fail in CI) before booting anything
	sims, err := comfysim.StartFleet(n, "127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("start simulators: %v", err)
	}
	t.Cleanup(func() {
		for _, s := range sims {
			_ = s.Close()
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Demo = true
	cfg.Server.Listen = ln.Addr().String()
	cfg.Server.PublicBaseURL = ""
	cfg.DataDir = t.TempDir()
	cfg.Store.Path, cfg.Files.Dir = "", ""
	cfg.HealthCheck.Interval = config.Millis(250 * time.Millisecond)
	cfg.HealthCheck.Timeout = config.Millis(2 * time.Second)
	var ports config.Ports
	for _, s := range sims {
		_, p, _ := net.SplitHostPort(s.Addr())
		port, _ := strconv.Atoi(p)
		ports = append(ports, port)
	}
	cfg.Servers = []config.Server{{ID: "sim-1", Name: "Simulated GPU box", IP: "127.0.0.1", Ports: ports}}
	if change != nil {
		change(&cfg)
	}
	cfg.WithDefaults()

	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.Options{Listener: ln, Logger: log, Out: io.Discard, UI: web.Handler()})
	if err != nil {
		cancel()
		t.Fatalf("app.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	d := &demo{t: t, URL: "http://" + ln.Addr().String(), Sims: sims, logs: logs}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("gateway stopped with %v", err)
		}
		if t.Failed() {
			out := logs.String()
			if len(out) > 8000 {
				out = "…" + out[len(out)-8000:]
			}
			t.Logf("gateway log:\n%s", out)
		}
	})
	return d
}

// call is a REST call as admin; it returns the envelope's data.
func (d *demo) call(method, path string, body any) (json.RawMessage, int) {
	d.t.Helper()
	if d.token == "" && path != "/api/auth/login" {
		raw, code := d.call("POST", "/api/auth/login", map[string]string{"username": "admin", "password": "admin123"})
		if code != http.StatusOK {
			d.t.Fatalf("login: %d %s", code, raw)
		}
		var l struct{ Token string }
		if err := json.Unmarshal(raw, &l); err != nil {
			d.t.Fatal(err)
		}
		d.token = l.Token
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			d.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.URL+path, rd)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var env struct {
		Data    json.RawMessage `json:"data"`
		Message string          `json:"message"`
	}
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &env); err != nil {
		d.t.Fatalf("%s %s: not an envelope: %s", method, path, b)
	}
	if res.StatusCode != http.StatusOK {
		return b, res.StatusCode
	}
	return env.Data, res.StatusCode
}

// mustCall is call that fails the test unless the answer is 200.
func (d *demo) mustCall(method, path string, body any, out any) {
	d.t.Helper()
	raw, code := d.call(method, path, body)
	if code != http.StatusOK {
		d.t.Fatalf("%s %s: %d %s", method, path, code, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			d.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

type taskView struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Progress int    `json:"progress"`
}

// submit posts a workflow through the API and returns the task.
func (d *demo) submit(wf map[string]any, params map[string]any, priority int) taskView {
	d.t.Helper()
	var tv taskView
	body := map[string]any{"workflow": wf, "priority": priority}
	if params != nil {
		body["params"] = params
	}
	d.mustCall("POST", "/api/tasks", body, &tv)
	return tv
}

// waitStatus waits until the task has the status, asking the API every
// 50 ms.
func (d *demo) waitStatus(id, status string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var tv taskView
		d.mustCall("GET", "/api/tasks/"+id, nil, &tv)
		if tv.Status == status {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("task %s is %s after %v, want %s", id, tv.Status, timeout, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// t2i is the usual text-to-image API workflow with the given sampler steps.
func t2i(steps int) map[string]any {
	var wf map[string]any
	src := `{
	  "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": ` + strconv.Itoa(steps) + `, "cfg": 7, "sampler_name": "euler", "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}, "_meta": {"title": "KSampler"}},
	  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}, "_meta": {"title": "Load Checkpoint"}},
	  "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}, "_meta": {"title": "Empty Latent Image"}},
	  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
	  "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}, "_meta": {"title": "Negative"}},
	  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "_meta": {"title": "VAE Decode"}},
	  "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "test", "images": ["8", 0]}, "_meta": {"title": "Save Image"}}
	}`
	if err := json.Unmarshal([]byte(src), &wf); err != nil {
		panic(err)
	}
	return wf
}
