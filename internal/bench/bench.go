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
// Scenarios: throughput, gap, efficiency, placement, scale, fanout and
// overhead; docs/BENCHMARKS.md describes each and quotes a run. Every
// scenario also checks correctness (every task completed, each ran once) and
// fails when it does not hold, so a quick run doubles as an end-to-end test.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	return nil
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
		{"overhead", "one instance, one task at a time: through the gateway vs straight to ComfyUI", runOverhead},
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
