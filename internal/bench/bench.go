// Package bench is "comfyfleet bench": load scenarios that start a gateway
// and simulated ComfyUI instances, drive them, and print one table per
// scenario with the measured figures, their targets and pass or gap.
//
// The gateway runs as a child process ("comfyfleet serve" on a generated
// config, a fresh data dir and a free port), so its CPU time and memory are
// read from /proc apart from the load generator's. The simulated instances
// (package comfysim) and the clients run in the bench process, which reads
// the simulators' execution log (when each prompt started and ended on which
// instance) and their model load counts.
//
// Scenarios: throughput, gap, efficiency, placement, mixed, scale, fanout,
// overhead and storage; docs/BENCHMARKS.md describes each and quotes a run. Overhead
// can also run against real ComfyUI servers (Options.Comfy), whose CPU time
// it reads from /proc when they run on this machine. Every
// scenario also checks correctness (every task completed, each ran once) and
// fails when it does not hold, so a quick run doubles as an end-to-end test.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Options configure a bench run. Zero fields take the defaults noted.
type Options struct {
	// Gateway is the command line that runs the comfyfleet binary; the bench
	// appends "serve --config FILE". Required.
	Gateway []string
	// Store is the gateway's store for every scenario but throughput (which
	// runs both): "sqlite" (default) or "redis".
	Store string
	// RedisURL is the Redis server for store "redis" and for throughput's
	// Redis row. Default "redis://127.0.0.1:6379/0". Each gateway run uses
	// a key prefix of its own, deleted afterwards.
	RedisURL string
	// Quick shrinks every scenario so the whole suite takes a couple of
	// minutes.
	Quick bool
	// Sizes override the scenario sizes; zero fields keep the defaults of
	// the mode (full or quick).
	Sizes Sizes
	// Out receives the tables. Default os.Stdout.
	Out io.Writer
	// Log receives progress lines. Default os.Stderr.
	Log io.Writer
	// TempDir holds the gateways' data dirs, removed at the end. Default
	// os.TempDir().
	TempDir string
	// ProfileDir, when set, receives a CPU profile of the gateway taken
	// from its metrics listener (/debug/pprof/profile) at the start of each
	// measured window: <run>.pprof. Default "": no profiles.
	ProfileDir string
	// ProfileTime is the length of each profile. Default 10s.
	ProfileTime time.Duration
	// Comfy are base URLs (http://host:port) of real ComfyUI servers for
	// the overhead scenario, the only one that takes them: it runs its jobs
	// straight to them round-robin and through a gateway that has all of
	// them. Default: none, one simulated instance.
	Comfy []string
	// ComfyOutputDir is the output folder of the Comfy servers as this
	// machine sees it, "{port}" standing for each one's port: the gateway
	// then reads outputs there rather than over /view (servers[].outputDir).
	// Default "": over /view.
	ComfyOutputDir string
	// QuietBelow, when above 0, holds each round of the overhead scenario
	// until the other processes of the machine use fewer cores than this
	// over a second, for at most QuietWait (default 2 minutes): on a
	// shared machine, rounds then fall in its quiet spells.
	QuietBelow float64
	QuietWait  time.Duration
	// GatewaySets are "key=value" settings (as "comfyfleet serve --set")
	// that every gateway the bench starts runs with, after its generated
	// config: scheduler.prefetch=0, say.
	GatewaySets []string
	// ComfyPIDs are the ComfyUI server processes whose CPU time the
	// overhead scenario reads. Default: the processes listening on the
	// Comfy URLs' ports, for the URLs that are on this machine.
	ComfyPIDs []int
	// SeaweedFSBin is the SeaweedFS weed binary the storage scenario
	// starts as its S3 server, on loopback, with a data dir in TempDir.
	// Default: $TEST_SEAWEEDFS_BIN, else weed on the PATH. Without one
	// (and without S3Endpoint), the storage scenario's S3 rows say
	// skipped.
	SeaweedFSBin string
	// S3Endpoint, S3Bucket and S3Region name an existing S3 service and
	// bucket for the storage scenario instead of starting SeaweedFS; its
	// credentials come from the environment (AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY) or ~/.aws/credentials, as the gateway's do,
	// never from flags. The run keeps its objects under a prefix of its
	// own and deletes them at the end.
	S3Endpoint, S3Bucket, S3Region string
}

// Default Redis URL of Options.RedisURL.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

func (o Options) withDefaults() Options {
	if o.Store == "" {
		o.Store = "sqlite"
	}
	if o.RedisURL == "" {
		o.RedisURL = DefaultRedisURL
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	if o.ProfileTime <= 0 {
		o.ProfileTime = 10 * time.Second
	}
	if o.QuietWait <= 0 {
		o.QuietWait = 2 * time.Minute
	}
	o.Sizes = o.Sizes.withDefaults(o.Quick)
	return o
}

func (o Options) validate() error {
	if len(o.Gateway) == 0 {
		return errors.New("bench: no gateway command")
	}
	if o.Store != "sqlite" && o.Store != "redis" {
		return fmt.Errorf("bench: store %q: want sqlite or redis", o.Store)
	}
	if o.QuietBelow < 0 {
		return fmt.Errorf("bench: quiet threshold %v: want a number of cores above 0", o.QuietBelow)
	}
	if (o.S3Endpoint == "") != (o.S3Bucket == "") {
		return errors.New("bench: an S3 endpoint and a bucket go together")
	}
	if o.S3Endpoint != "" {
		u, err := url.Parse(o.S3Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
			return fmt.Errorf("bench: S3 endpoint %q: want http(s)://host[:port], without a path or credentials", o.S3Endpoint)
		}
	}
	if len(o.ComfyPIDs) > 0 && len(o.Comfy) == 0 {
		return errors.New("bench: ComfyUI pids given without ComfyUI URLs")
	}
	_, err := comfyBases(o.Comfy)
	return err
}

// comfyBases checks ComfyUI URLs, which must be http://host:port (the
// gateway reaches an instance by host and port over plain HTTP), and
// returns them without a trailing slash.
func comfyBases(urls []string) ([]string, error) {
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("bench: ComfyUI URL %q: %w", s, err)
		}
		if u.Scheme != "http" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("bench: ComfyUI URL %q: want http://host:port", s)
		}
		base := "http://" + u.Host
		if slices.Contains(out, base) {
			return nil, fmt.Errorf("bench: ComfyUI URL %q given twice", s)
		}
		out = append(out, base)
	}
	return out, nil
}

// Scenario is one benchmark.
type Scenario struct {
	// Name is the command-line name.
	Name string
	// Summary says what it measures, in one line.
	Summary string
	run     func(ctx context.Context, e *env) (*Table, error)
}

// Scenarios returns every scenario in the order "all" runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{"throughput", "completed tasks/s and gateway CPU per task, zero-duration tasks, SQLite and Redis", runThroughput},
		{"gap", "dispatch gap: instance idle time between two prompts with a deep queue", runGap},
		{"efficiency", "fleet makespan of heavy-tailed tasks vs the lower bound, and vs round-robin", runEfficiency},
		{"placement", "warm-model placement vs FIFO: makespan and model loads", runPlacement},
		{"mixed", "a fleet of two catalogues: placement by capability vs capability-blind, failed runs and makespan", runMixed},
		{"scale", "a large pending queue (submit rate, RSS, list latency) and 1,000 health-checked instances", runScale},
		{"fanout", "event delivery latency to many /ws clients under load", runFanout},
		{"overhead", "the same jobs straight to ComfyUI and through the gateway, one at a time and at once; --comfy for real servers", runOverhead},
		{"storage", "the same jobs with outputs on the disk store and on S3 (SeaweedFS, or --s3-endpoint), and their downloads", runStorage},
	}
}

// Result is one scenario's outcome.
type Result struct {
	Scenario string
	Table    *Table
	Elapsed  time.Duration
}

// Run runs the named scenarios ("all" for every one) in order, printing
// each table to opts.Out as it completes. It stops at the first error.
func Run(ctx context.Context, opts Options, names []string) ([]Result, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	list, err := pick(names)
	if err != nil {
		return nil, err
	}
	if len(opts.Comfy) > 0 && slices.ContainsFunc(list, func(s Scenario) bool { return s.Name != "overhead" }) {
		return nil, errors.New("bench: ComfyUI URLs apply to the overhead scenario only")
	}
	if opts.ProfileDir != "" {
		if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: profile dir: %w", err)
		}
	}
	e, err := newEnv(opts)
	if err != nil {
		return nil, err
	}
	defer e.close()
	fmt.Fprint(opts.Out, e.machine().String())
	var results []Result
	for _, sc := range list {
		e.logf("%s: start", sc.Name)
		start := time.Now()
		tab, err := sc.run(ctx, e.scoped(sc.Name))
		if err != nil {
			return results, fmt.Errorf("bench %s: %w", sc.Name, err)
		}
		elapsed := time.Since(start)
		e.logf("%s: done in %s", sc.Name, elapsed.Round(100*time.Millisecond))
		fmt.Fprintln(opts.Out)
		tab.Print(opts.Out)
		results = append(results, Result{Scenario: sc.Name, Table: tab, Elapsed: elapsed})
	}
	return results, nil
}

// pick resolves scenario names; "all" means every scenario.
func pick(names []string) ([]Scenario, error) {
	all := Scenarios()
	if len(names) == 0 {
		return nil, errors.New("bench: name a scenario, or all")
	}
	var out []Scenario
	for _, n := range names {
		if n == "all" {
			out = append(out, all...)
			continue
		}
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("bench: unknown scenario %q (want all, %s)", n, strings.Join(scenarioNames(), ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func scenarioNames() []string {
	var names []string
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	return names
}
