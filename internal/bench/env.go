package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// env is what every scenario shares: options, the temp dir, one HTTP client.
type env struct {
	opts  Options
	sizes Sizes
	// name prefixes progress lines (the scenario).
	name string
	root string
	hc   *http.Client
	// runs numbers the gateways started, for their data dir names.
	runs *atomic.Int64
}

func newEnv(opts Options) (*env, error) {
	root, err := os.MkdirTemp(opts.TempDir, "comfyfleet-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}
	return &env{
		opts: opts, sizes: opts.Sizes, root: root,
		hc:   &http.Client{Transport: tr, Timeout: 2 * time.Minute},
		runs: new(atomic.Int64),
	}, nil
}

func (e *env) close() {
	e.hc.CloseIdleConnections()
	if err := os.RemoveAll(e.root); err != nil {
		e.logf("remove %s: %v", e.root, err)
	}
}

// scoped returns e with progress lines prefixed by name.
func (e *env) scoped(name string) *env {
	c := *e
	c.name = name
	return &c
}

// logf writes one progress line.
func (e *env) logf(format string, args ...any) {
	prefix := "bench"
	if e.name != "" {
		prefix += " " + e.name
	}
	fmt.Fprintf(e.opts.Log, "%s %s: %s\n", time.Now().Format("15:04:05"), prefix, fmt.Sprintf(format, args...))
}

// sims is a fleet of simulated instances sharing one execution log.
type sims struct {
	list []*comfysim.Sim
	log  *comfysim.Log
}

// startSims starts n instances with opts (and a fresh shared log).
func startSims(n int, opts comfysim.Options) (*sims, error) {
	opts.Log = comfysim.NewLog()
	opts.DisableMetadata = true
	list, err := comfysim.StartFleet(n, "127.0.0.1:0", opts)
	if err != nil {
		return nil, err
	}
	return &sims{list: list, log: opts.Log}, nil
}

// ports are the instances' ports, in order.
func (s *sims) ports() []int {
	out := make([]int, len(s.list))
	for i, sim := range s.list {
		_, p, _ := net.SplitHostPort(sim.Addr())
		out[i], _ = strconv.Atoi(p)
	}
	return out
}

// urls are the instances' base URLs, in order.
func (s *sims) urls() []string {
	out := make([]string, len(s.list))
	for i, sim := range s.list {
		out[i] = sim.URL()
	}
	return out
}

// ids are the gateway's instance ids ("127.0.0.1:port").
func (s *sims) ids() []string {
	out := make([]string, len(s.list))
	for i, p := range s.ports() {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out
}

// modelLoads sums the instances' checkpoint loads.
func (s *sims) modelLoads() int {
	n := 0
	for _, sim := range s.list {
		n += sim.ModelLoads()
	}
	return n
}

func (s *sims) close() {
	for _, sim := range s.list {
		sim.Close()
	}
}

// machine describes where the bench runs.
type machine struct {
	cores   int
	cpu     string
	goVer   string
	platf   string
	loadavg string
}

func (e *env) machine() machine {
	return machine{
		cores: runtime.NumCPU(), cpu: cpuModel(), goVer: runtime.Version(),
		platf: runtime.GOOS + "/" + runtime.GOARCH, loadavg: loadAvg(),
	}
}

func (m machine) String() string {
	return fmt.Sprintf("machine: %d cores, %s, %s, %s; load average at start: %s\n",
		m.cores, m.cpu, m.platf, m.goVer, m.loadavg)
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// loadAvg is the 1, 5 and 15 minute load averages, or "n/a".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}
