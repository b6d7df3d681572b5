package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Targets of the overhead scenario, as shares of direct: the gateway's
// throughput with a burst submitted at once, and its latency one job at a
// time (median). With several instances, the gateway's throughput is also
// to beat one instance's, straight.
const (
	overheadRateTarget    = 0.9
	overheadLatencyTarget = 1.3
)

// overheadWarmup is the number of jobs each path runs, unmeasured, before
// the first round: connections, caches and ComfyUI's first-run costs.
const overheadWarmup = 5

// overheadSize is the side of the overhead scenario's images, in pixels.
const overheadSize = 64

// runOverhead runs the same trivial jobs straight to ComfyUI and through a
// gateway, in rounds: each round runs every path with one job at a time,
// then every path with a burst of jobs submitted at once. The instances are
// the Options.Comfy servers, or one simulated instance.
func runOverhead(ctx context.Context, e *env) (*Table, error) {
	fl, err := e.overheadFleet(ctx)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	g, err := e.startGateway(ctx, fl.gatewaySpec())
	if err != nil {
		return nil, err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, len(fl.bases), time.Minute); err != nil {
		return nil, err
	}
	r := &overheadRun{
		sizes: e.sizes, fleet: fl, meter: cpuMeter{gateway: g, comfy: fl.pids}, gatewayAbout: gatewayAbout(g),
		quiet: quietGate{Below: e.opts.QuietBelow, Wait: e.opts.QuietWait},
		id:    time.Now().Format("20060102-150405") + "-" + randomHex(3), colour: rand.IntN(1 << 24),
		paths: []overheadPath{
			{name: "direct", tag: "direct", serial: e.directSerial(fl.bases, false), burst: e.directBurst(fl.bases, false)},
			{name: "direct + outputs", tag: "outputs", serial: e.directSerial(fl.bases, true), burst: e.directBurst(fl.bases, true)},
		},
	}
	// The best a client keeping the gateway's window in each instance can
	// do: the gateway's prompt running and its prefetched ones queued.
	// A gateway that does not say its prefetch (an older build) runs
	// without that path.
	if prefetch, err := g.admin.prefetch(ctx); err != nil {
		e.logf("the gateway's prefetch is unknown, so the path with its window is left out: %v", err)
	} else {
		r.window = prefetch + 1
		r.paths = append(r.paths, overheadPath{name: windowPath(r.window), tag: "window", burst: e.directWindow(fl.bases, r.window)})
	}
	if len(fl.bases) > 1 {
		// What the gateway in front of several instances has to beat: one
		// instance, straight, at once.
		r.paths = append(r.paths, overheadPath{name: oneInstance, tag: "direct1", burst: e.directBurst(fl.bases[:1], false)})
	}
	r.paths = append(r.paths, overheadPath{name: "gateway", tag: "gateway", serial: gatewaySerial(g), burst: gatewayBurst(e, g),
		stages: g.stageSums,
		// One CPU profile per mode, from the gateway's first phase of it that
		// does not overlap the other's (see --profile-time).
		profile: func(ctx context.Context, mode int) { g.profile(ctx, "-"+modeTag(mode)) }})
	if err := r.run(ctx, e.logf); err != nil {
		return nil, err
	}
	if fl.sims != nil {
		if err := checkRuns(fl.sims.log, r.jobs()); err != nil {
			return nil, err
		}
	}
	return r.table(), nil
}

// overheadPath is one way of running a job.
type overheadPath struct {
	// name heads the path's column; tag names its output subfolders.
	name, tag string
	// serial starts a client that runs one job at a time: runOne submits a
	// prompt and returns when it is done.
	serial func(ctx context.Context) (runOne func(ctx context.Context, prompt string) error, stop func(), err error)
	// serial is nil for a path that only runs at once.
	// burst submits the prompts at once and returns the time from the
	// first submit to the last job done.
	burst func(ctx context.Context, prompts []string) (time.Duration, error)
	// profile, when set, is called as each of the path's phases starts.
	profile func(ctx context.Context, mode int)
	// stages, when set, reads the gateway's run stages (around a phase,
	// outside its CPU readings).
	stages func(ctx context.Context) (stageSums, error)
}

// windowPath names the path straight to the instances with at most k
// prompts in each (directWindow).
func windowPath(k int) string { return fmt.Sprintf("direct, %d in flight", k) }

// oneInstance names the path straight to the first instance alone.
const oneInstance = "direct to one instance"

// The modes of a phase.
const (
	serialMode = iota // one job at a time
	burstMode         // every job submitted at once
)

// phase is one measured window: one path's jobs in one round, in one mode.
type phase struct {
	jobs int
	// latencies are each job's, submit to done (serial mode only).
	latencies []time.Duration
	// elapsed runs from the first submit to the last job done.
	elapsed time.Duration
	cpu     cpuUse
	// stages are the gateway's run stages of the phase's jobs.
	stages stageSums
}

// roundLoad is where the CPU went during one round's phases.
type roundLoad struct {
	start, end time.Time
	cpu        cpuUse
	// loadavg is /proc/loadavg's first three fields at the round's end.
	loadavg string
	// waited is how long the round waited for the machine to be quiet,
	// and quiet whether it was when the round started (see waitQuiet).
	waited time.Duration
	quiet  bool
}

// overheadRun measures the paths round after round.
type overheadRun struct {
	sizes Sizes
	fleet *comfyFleet
	meter cpuMeter
	paths []overheadPath
	// id names the run's output folder on the instances.
	id string
	// colour is the next job's image colour: each job has its own, so
	// ComfyUI's cache never replays one.
	colour int
	// phases[mode][path] holds one phase per round (none for a path
	// without that mode).
	phases [2][][]phase
	rounds []roundLoad
	// warmed counts the unmeasured warm-up jobs.
	warmed int
	// gatewayAbout describes the gateway's settings.
	gatewayAbout string
	// quiet holds rounds back while the machine is busy.
	quiet quietGate
	// window is the gateway's prompts per instance at most: its prefetch
	// plus the running one (the windowPath path's k).
	window int
}

// gatewayAbout describes a gateway's store and the settings it was given.
func gatewayAbout(g *gateway) string {
	s := g.spec.store + " store, health checks every " + fmtDur(g.spec.health)
	if sets := g.e.opts.GatewaySets; len(sets) > 0 {
		s += ", " + strings.Join(sets, ", ")
	} else {
		s += ", the default scheduler settings"
	}
	return s
}

// run warms every path up, then measures every round. Within a round the
// paths take turns, in reverse order every other round, so that a drift of
// the machine's load over a round does not always fall on the same path.
func (r *overheadRun) run(ctx context.Context, logf func(string, ...any)) error {
	per := max(r.sizes.OverheadTasks/r.sizes.OverheadRounds, 1)
	for mode := range r.phases {
		r.phases[mode] = make([][]phase, len(r.paths))
	}
	for _, p := range r.paths {
		if err := r.warm(ctx, p); err != nil {
			return fmt.Errorf("warm-up, %s: %w", p.name, err)
		}
	}
	for round := range r.sizes.OverheadRounds {
		var load roundLoad
		if r.quiet.Below > 0 {
			var err error
			if load.waited, load.quiet, err = r.waitQuiet(ctx, round, logf); err != nil {
				return err
			}
		}
		load.start = time.Now()
		order := make([]int, len(r.paths))
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for mode, n := range [2]int{per, r.sizes.OverheadBurst} {
			for _, i := range order {
				p := r.paths[i]
				if mode == serialMode && p.serial == nil {
					continue
				}
				if p.profile != nil {
					p.profile(ctx, mode)
				}
				ph, err := r.measure(ctx, p, mode, r.prompts(fmt.Sprintf("r%d", round+1), p.tag, mode, n))
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", round+1, p.name, modeName(mode), err)
				}
				r.phases[mode][i] = append(r.phases[mode][i], ph)
				load.cpu = load.cpu.add(ph.cpu)
			}
		}
		load.end, load.loadavg = time.Now(), loadAvg()
		r.rounds = append(r.rounds, load)
		logf("round %d of %d done: %s; load average %s", round+1, r.sizes.OverheadRounds, load.cpu, load.loadavg)
	}
	return nil
}

// quietGate holds each round back until the machine is quiet.
type quietGate struct {
	// Below is the most cores other processes may use for a round to
	// start; 0 starts every round at once.
	Below float64
	// Wait bounds the wait of one round; the round then starts anyway.
	Wait time.Duration
}

// quietWindow is how long the machine is watched at a time before a round.
const quietWindow = time.Second

// waitQuiet waits until other processes used less than r.quiet.Below cores
// over a quietWindow, or r.quiet.Wait passed; it returns how long it
// waited and whether the machine was quiet.
func (r *overheadRun) waitQuiet(ctx context.Context, round int, logf func(string, ...any)) (time.Duration, bool, error) {
	return r.quiet.wait(ctx, r.meter, round, logf)
}

// wait waits until the processes m does not measure used less than
// q.Below cores over a quietWindow, or q.Wait passed; it returns how long
// it waited and whether the machine was quiet.
func (q quietGate) wait(ctx context.Context, m cpuMeter, round int, logf func(string, ...any)) (time.Duration, bool, error) {
	start := time.Now()
	logged := false
	for {
		s0 := m.sample()
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(quietWindow):
		}
		use := m.sample().sub(s0)
		other := use.cores(use.other())
		waited := time.Since(start)
		switch {
		case !use.machineOK:
			return waited, false, nil // nothing to go by
		case other < q.Below:
			if logged {
				logf("round %d: other processes down to %.2f cores after %s", round+1, other, fmtDur(waited))
			}
			return waited, true, nil
		case waited >= q.Wait:
			logf("round %d: other processes still use %.2f cores after %s; starting anyway", round+1, other, fmtDur(waited))
			return waited, false, nil
		case !logged:
			logf("round %d: other processes use %.2f cores; waiting for less than %.2f (at most %s)", round+1, other, q.Below, fmtDur(q.Wait))
			logged = true
		}
	}
}

// warm runs overheadWarmup jobs on a path, one at a time (at once for a
// path without that mode), and counts them in r.warmed.
func (r *overheadRun) warm(ctx context.Context, p overheadPath) error {
	mode := serialMode
	if p.serial == nil {
		mode = burstMode
	}
	prompts := r.prompts("warmup", p.tag, mode, overheadWarmup)
	if _, err := r.measure(ctx, p, mode, prompts); err != nil {
		return err
	}
	r.warmed += len(prompts)
	return nil
}

func modeName(mode int) string {
	if mode == serialMode {
		return "one at a time"
	}
	return "at once"
}

// modeTag names a mode in output folders and profile names.
func modeTag(mode int) string { return [2]string{"serial", "burst"}[mode] }

// prompts are a phase's jobs: each a colour of its own, saved into a
// subfolder of the phase, overheadFolderJobs jobs to a folder (ComfyUI
// lists the folder on every save, so folders are kept small and alike,
// whatever the phase's size).
func (r *overheadRun) prompts(round, tag string, mode, n int) []string {
	folder := fmt.Sprintf("comfyfleet-bench/%s/%s-%s-%s", r.id, round, tag, modeTag(mode))
	out := make([]string, n)
	for i := range out {
		out[i] = imagePrompt(overheadSize, r.colour, fmt.Sprintf("%s/%03d/job", folder, i/overheadFolderJobs))
		r.colour++
	}
	return out
}

// overheadFolderJobs is the most jobs saved into one output folder.
const overheadFolderJobs = 100

// measure runs one phase, reading the CPU times around it.
func (r *overheadRun) measure(ctx context.Context, p overheadPath, mode int, prompts []string) (ph phase, err error) {
	if p.stages != nil {
		before, serr := p.stages(ctx)
		if serr != nil {
			return phase{}, serr
		}
		defer func() {
			if err != nil {
				return
			}
			var after stageSums
			after, err = stagesAfter(ctx, p.stages, before, len(prompts))
			ph.stages = after.sub(before)
		}()
	}
	return r.measureCPU(ctx, p, mode, prompts)
}

// stagesAfter reads the stages once the phase's n runs have reported
// theirs: a run reports them just after its task's completion went out,
// so the client can see its last job done a moment before. After
// stagesWait it takes what is there.
func stagesAfter(ctx context.Context, read func(context.Context) (stageSums, error), before stageSums, n int) (stageSums, error) {
	last := len(runStages) - 1
	deadline := time.Now().Add(stagesWait)
	for {
		after, err := read(ctx)
		if err != nil || !after.ok || after.count[last]-before.count[last] >= uint64(n) || time.Now().After(deadline) {
			return after, err
		}
		select {
		case <-ctx.Done():
			return after, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stagesWait bounds stagesAfter's wait.
const stagesWait = 5 * time.Second

// measureCPU runs one phase, reading the CPU times around it.
func (r *overheadRun) measureCPU(ctx context.Context, p overheadPath, mode int, prompts []string) (phase, error) {
	ph := phase{jobs: len(prompts)}
	if mode == burstMode {
		s0 := r.meter.sample()
		elapsed, err := p.burst(ctx, prompts)
		if err != nil {
			return phase{}, err
		}
		ph.elapsed, ph.cpu = elapsed, r.meter.sample().sub(s0)
		return ph, nil
	}
	runOne, stop, err := p.serial(ctx)
	if err != nil {
		return phase{}, err
	}
	defer stop()
	s0 := r.meter.sample()
	for _, prompt := range prompts {
		t0 := time.Now()
		if err := runOne(ctx, prompt); err != nil {
			return phase{}, err
		}
		ph.latencies = append(ph.latencies, time.Since(t0))
	}
	s1 := r.meter.sample()
	ph.elapsed, ph.cpu = s1.at.Sub(s0.at), s1.sub(s0)
	return ph, nil
}

// jobs counts the jobs run on every path, warm-up included.
func (r *overheadRun) jobs() int {
	n := r.warmed
	for _, byPath := range r.phases {
		for _, phases := range byPath {
			for _, ph := range phases {
				n += ph.jobs
			}
		}
	}
	return n
}

// directSerial runs one job at a time straight to the instances,
// round-robin: POST /prompt with a client id, wait for executing{node:null}
// of that prompt on the client's socket; with outputs, also GET
// /history/{id} and GET /view of every image.
func (e *env) directSerial(bases []string, outputs bool) func(ctx context.Context) (func(context.Context, string) error, func(), error) {
	return func(ctx context.Context) (func(context.Context, string) error, func(), error) {
		clientID := "bench-" + randomHex(8)
		done := make(chan string, 1024)
		ws, err := dialComfy(ctx, bases, clientID, func(_, id string, failed bool, _ time.Time) {
			done <- outcome(id, failed).Type + " " + id
		})
		if err != nil {
			return nil, nil, err
		}
		next := 0
		runOne := func(ctx context.Context, prompt string) error {
			base := bases[next%len(bases)]
			next++
			id, err := e.postPrompt(ctx, base, prompt, clientID)
			if err != nil {
				return err
			}
			if err := waitID(ctx, done, "task_completed "+id, ws.ended); err != nil {
				return err
			}
			if outputs {
				return e.fetchOutputs(ctx, base, id)
			}
			return nil
		}
		return runOne, ws.close, nil
	}
}

// gatewaySerial submits a task and waits for its task_completed on /ws.
func gatewaySerial(g *gateway) func(ctx context.Context) (func(context.Context, string) error, func(), error) {
	return func(ctx context.Context) (func(context.Context, string) error, func(), error) {
		done := make(chan string, 1024)
		st, err := g.admin.dialEvents(ctx, func(m *message, _ time.Time) {
			if m.Type == "task_completed" || m.Type == "task_failed" {
				done <- m.Type + " " + m.Data.TaskID
			}
		})
		if err != nil {
			return nil, nil, err
		}
		runOne := func(ctx context.Context, prompt string) error {
			id, err := g.admin.submit(ctx, taskBody(prompt))
			if err != nil {
				return err
			}
			return waitID(ctx, done, "task_completed "+id, st.done)
		}
		return runOne, st.close, nil
	}
}

// gatewayBurst submits the tasks from Sizes.Clients concurrent clients and
// waits for every task_completed on /ws.
func gatewayBurst(e *env, g *gateway) func(ctx context.Context, prompts []string) (time.Duration, error) {
	return func(ctx context.Context, prompts []string) (time.Duration, error) {
		b, err := measureBatch(ctx, e, g, len(prompts), func(i int) []byte { return taskBody(prompts[i]) }, false)
		return b.elapsed, err
	}
}
