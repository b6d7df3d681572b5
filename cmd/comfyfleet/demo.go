package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/web"
)

// demoListen is the demo's default address: its login admin/admin123 is
// public, so it serves this machine only unless told otherwise.
const demoListen = "127.0.0.1:3000"

// demoFlags are the flags of "comfyfleet demo".
type demoFlags struct {
	listen, data         string
	instances            int
	nodeDelay, stepDelay time.Duration
	previews             string
}

func parseDemoFlags(args []string) (demoFlags, error) {
	var f demoFlags
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&f.listen, "listen", demoListen, "gateway listen address; the demo's login is public, so expose it with care")
	fs.IntVar(&f.instances, "instances", 4, "number of simulated ComfyUI instances")
	fs.StringVar(&f.data, "data", "./data", "data directory (SQLite database and files)")
	fs.DurationVar(&f.nodeDelay, "node-delay", 100*time.Millisecond, "simulated duration of each node")
	fs.DurationVar(&f.stepDelay, "step-delay", 50*time.Millisecond, "simulated duration of each sampler step")
	fs.StringVar(&f.previews, "preview-method", "auto", `sampler previews shown live on a task's page: "auto", or "none"`)
	err := fs.Parse(args)
	return f, err
}

// runDemo is "comfyfleet demo": the gateway on the embedded store with
// simulated ComfyUI instances in the same process. Nothing else is needed.
func runDemo(ctx context.Context, args []string) error {
	f, err := parseDemoFlags(args)
	if err != nil {
		return err
	}
	opts := comfysim.Options{NodeDelay: f.nodeDelay, StepDelay: f.stepDelay, PreviewMethod: f.previews}
	sims, err := startDemoSims(f.instances, opts)
	defer func() {
		for _, s := range sims {
			s.Close()
		}
	}()
	if err != nil {
		return fmt.Errorf("start simulated instances: %w", err)
	}
	cfg := demoConfig(f.listen, f.data, sims)
	log := newLogger()
	if !isLoopback(f.listen) {
		log.Warn("DEMO MODE on a non-loopback address: anyone who reaches it can log in as admin / admin123", "listen", f.listen)
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Out: os.Stdout, UI: web.Handler()})
	if err != nil {
		return err
	}
	printDemoBanner(a.URL(), sims)
	return a.Run(ctx)
}

// The demo's two kinds of instance: the first half of them a large box
// with SDXL and SD 1.5 checkpoints, the rest a small box with SD 1.5 only
// and without the ImageBlur node. A task is placed only where it can run.
var (
	demoLarge = comfysim.Options{Checkpoints: comfysim.DefaultCheckpoints}
	demoSmall = comfysim.Options{Checkpoints: []string{"v1-5-pruned-emaonly.safetensors", "dreamshaper_8.safetensors"},
		MissingClasses: []string{"ImageBlur"}}
)

// demoLarges is how many of n demo instances are large.
func demoLarges(n int) int { return (n + 1) / 2 }

// startDemoSims starts n simulated instances of the two kinds; on error
// the ones started are returned for the caller to close.
func startDemoSims(n int, opts comfysim.Options) ([]*comfysim.Sim, error) {
	var sims []*comfysim.Sim
	for i := range n {
		kind := demoSmall
		if i < demoLarges(n) {
			kind = demoLarge
		}
		o := opts
		o.Checkpoints, o.MissingClasses = kind.Checkpoints, kind.MissingClasses
		s := comfysim.New(o)
		if err := s.Start("127.0.0.1:0"); err != nil {
			return sims, err
		}
		sims = append(sims, s)
	}
	return sims, nil
}

// isLoopback reports whether a listen address serves this machine only:
// a loopback IP or "localhost". ":3000" (every interface) is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func demoConfig(listen, data string, sims []*comfysim.Sim) config.Config {
	var cfg config.Config // zero: every default is derived from the fields set here
	cfg.Demo = true
	cfg.Server.Listen = listen
	cfg.DataDir, _ = filepath.Abs(data)
	cfg.HealthCheck.Interval = config.Millis(2 * time.Second)
	cfg.HealthCheck.Timeout = config.Millis(time.Second)
	var large, small config.Ports
	for i, s := range sims {
		if i < demoLarges(len(sims)) {
			large = append(large, portOf(s.Addr()))
		} else {
			small = append(small, portOf(s.Addr()))
		}
	}
	cfg.Servers = []config.Server{{ID: "sim-1", Name: "Simulated GPU box", IP: "127.0.0.1", Ports: large,
		Labels: config.Labels{"gpu": "a100", "pool": "xl"}}}
	if len(small) > 0 {
		cfg.Servers = append(cfg.Servers, config.Server{ID: "sim-2", Name: "Simulated small GPU box", IP: "127.0.0.1",
			Ports: small, Labels: config.Labels{"gpu": "t4"}})
	}
	cfg.WithDefaults()
	return cfg
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return port
}

func printDemoBanner(url string, sims []*comfysim.Sim) {
	fmt.Printf(`
  ComfyFleet demo is running.

    Dashboard and API:  %s
    Login:              admin / admin123   (DEMO ONLY: a well-known password; never use demo mode in production)
    Simulated ComfyUI:  %d instances (%s ... ): half with SDXL and SD 1.5
                        (gpu=a100), half with SD 1.5 only (gpu=t4)

  Try:
    TOKEN=$(curl -s %s/api/auth/login -H 'Content-Type: application/json' \
      -d '{"username":"admin","password":"admin123"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
    curl -s %s/api/instances -H "Authorization: Bearer $TOKEN"

  Press Ctrl+C to stop.

`, url, len(sims), instance.ID("127.0.0.1", portOf(sims[0].Addr())), url, url)
}
