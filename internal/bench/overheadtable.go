package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// figures are one path's figures over one or more of its phases.
type figures struct {
	// p50 and p95 are the latencies of the one-at-a-time mode.
	p50, p95 time.Duration
	// rate is jobs per second of elapsed time.
	rate float64
	// gateway, comfy, storage and bench are the CPU time per job of each
	// process.
	gateway, comfy, storage, bench time.Duration
	// other is the cores that other processes used.
	other float64
	// comfyOK and machineOK say whether comfy and other could be read.
	comfyOK, machineOK bool
	// stages are the gateway's run stages (the gateway path only).
	stages stageSums
}

// figuresOf pools phases.
func figuresOf(phases ...phase) figures {
	var lat []time.Duration
	var use cpuUse
	var elapsed time.Duration
	jobs := 0
	stages := stageSums{ok: len(phases) > 0}
	for _, ph := range phases {
		stages = stages.add(ph.stages)
		lat = append(lat, ph.latencies...)
		use = use.add(ph.cpu)
		elapsed += ph.elapsed
		jobs += ph.jobs
	}
	slices.Sort(lat)
	f := figures{p50: percentile(lat, 50), p95: percentile(lat, 95), other: use.cores(use.other()),
		comfyOK: use.comfyOK, machineOK: use.machineOK, stages: stages}
	if elapsed > 0 {
		f.rate = float64(jobs) / elapsed.Seconds()
	}
	if jobs > 0 {
		n := time.Duration(jobs)
		f.gateway, f.comfy, f.storage, f.bench = use.gateway/n, use.comfy/n, use.storage/n, use.bench/n
	}
	return f
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// overheadRow is one line of the overhead table: one figure of one mode.
type overheadRow struct {
	mode int
	name string
	// value reads the figure; ok is false where it was not measured.
	value func(f figures) (v float64, ok bool)
	// ratio says whether gateway / direct means something for the figure.
	ratio bool
}

// The names of the rows that carry the targets.
const (
	latencyRow = "one at a time: latency p50, ms"
	jobsRow    = "one at a time: jobs/s"
)

// burstRow names the row of the at-once throughput.
func (r *overheadRun) burstRow() string {
	return itoa(r.sizes.OverheadBurst) + " " + modeName(burstMode) + ": done/s"
}

// rows are the overhead table's lines.
func (r *overheadRun) rows() []overheadRow {
	comfyMeasured := len(r.fleet.pids) > 0
	serial, burst := modeName(serialMode), itoa(r.sizes.OverheadBurst)+" "+modeName(burstMode)
	rows := []overheadRow{
		{serialMode, latencyRow, func(f figures) (float64, bool) { return ms(f.p50), true }, true},
		{serialMode, serial + ": latency p95, ms", func(f figures) (float64, bool) { return ms(f.p95), true }, true},
		{serialMode, jobsRow, func(f figures) (float64, bool) { return f.rate, true }, true},
		{burstMode, r.burstRow(), func(f figures) (float64, bool) { return f.rate, true }, true},
	}
	for mode, prefix := range [2]string{serial, burst} {
		rows = append(rows,
			overheadRow{mode, prefix + ": gateway CPU per job, ms", func(f figures) (float64, bool) { return ms(f.gateway), true }, false},
			overheadRow{mode, prefix + ": ComfyUI CPU per job, ms", func(f figures) (float64, bool) { return ms(f.comfy), comfyMeasured && f.comfyOK }, true},
			overheadRow{mode, prefix + ": client CPU per job, ms", func(f figures) (float64, bool) { return ms(f.bench), true }, true})
	}
	for mode, prefix := range [2]string{serial, burst} {
		for i, stage := range runStages {
			rows = append(rows, overheadRow{mode, prefix + ": run stage " + stage + ", mean ms", func(f figures) (float64, bool) {
				d, ok := f.stages.mean(i)
				return ms(d), ok
			}, false})
		}
	}
	for mode, prefix := range [2]string{serial, burst} {
		rows = append(rows, overheadRow{mode, prefix + ": other processes, cores", func(f figures) (float64, bool) { return f.other, f.machineOK }, false})
	}
	return rows
}

// spread is a figure over all rounds and its range over the rounds.
type spread struct {
	all, lo, hi float64
	ok          bool
}

func (s spread) String() string {
	switch {
	case !s.ok:
		return "n/a"
	case s.lo == s.hi:
		return sig3(s.all)
	}
	return fmt.Sprintf("%s (%s–%s)", sig3(s.all), sig3(s.lo), sig3(s.hi))
}

// has reports whether a path ran in a mode.
func (r *overheadRun) has(mode, path int) bool { return len(r.phases[mode][path]) > 0 }

// spreadOf reads a row's figure of a path over all rounds and per round.
func (r *overheadRun) spreadOf(row overheadRow, path int) (all float64, perRound []float64, ok bool) {
	phases := r.phases[row.mode][path]
	all, ok = row.value(figuresOf(phases...))
	for _, ph := range phases {
		v, rok := row.value(figuresOf(ph))
		perRound = append(perRound, v)
		ok = ok && rok
	}
	return all, perRound, ok
}

// newSpread is the spread of all and the per-round values.
func newSpread(all float64, perRound []float64, ok bool) spread {
	if len(perRound) == 0 {
		return spread{}
	}
	return spread{all: all, lo: slices.Min(perRound), hi: slices.Max(perRound), ok: ok}
}

// ratio is path a's figure over path b's, over all rounds and per round.
func (r *overheadRun) ratio(row overheadRow, a, b int) spread {
	allA, roundsA, okA := r.spreadOf(row, a)
	allB, roundsB, okB := r.spreadOf(row, b)
	if !okA || !okB || allB == 0 || len(roundsA) != len(roundsB) || slices.Contains(roundsB, 0) {
		return spread{}
	}
	per := make([]float64, len(roundsA))
	for i := range per {
		per[i] = roundsA[i] / roundsB[i]
	}
	return newSpread(allA/allB, per, true)
}

// gatewayPath is the gateway's index in r.paths: the last.
func (r *overheadRun) gatewayPath() int { return len(r.paths) - 1 }

// pathIndex is the index of the path named name, or -1.
func (r *overheadRun) pathIndex(name string) int {
	return slices.IndexFunc(r.paths, func(p overheadPath) bool { return p.name == name })
}

// target is one of the scenario's targets: the gateway's figure of a row
// over another path's, against a bound.
type target struct {
	row  string
	path string // the path the gateway is compared with
	// atMost: the ratio must be at most bound; otherwise at least (or,
	// with strict, above) bound.
	atMost, strict bool
	bound          float64
}

func (t target) String() string {
	op := "≥"
	switch {
	case t.atMost:
		op = "≤"
	case t.strict:
		op = ">"
	}
	return fmt.Sprintf("gateway / %s %s %.2f", t.path, op, t.bound)
}

// met reports whether x meets the target.
func (t target) met(x float64) bool {
	switch {
	case t.atMost:
		return x <= t.bound
	case t.strict:
		return x > t.bound
	}
	return x >= t.bound
}

// targets are the run's targets: latency and throughput against direct,
// and with several instances throughput against one instance straight.
func (r *overheadRun) targets() []target {
	out := []target{
		{row: latencyRow, path: "direct", atMost: true, bound: overheadLatencyTarget},
		{row: r.burstRow(), path: "direct", bound: overheadRateTarget},
	}
	if r.pathIndex(oneInstance) >= 0 {
		out = append(out, target{row: r.burstRow(), path: oneInstance, strict: true, bound: 1})
	}
	return out
}

// table renders the run: a column per path, the gateway last, then the
// gateway's ratio to each other path; a table per round follows.
func (r *overheadRun) table() *Table {
	fleet := fmt.Sprintf("%d ComfyUI servers", len(r.fleet.bases))
	switch {
	case r.fleet.simulated():
		fleet = "a simulated instance"
	case len(r.fleet.bases) == 1:
		fleet = "a ComfyUI server"
	}
	gw := r.gatewayPath()
	header := []string{"figure"}
	for _, p := range r.paths {
		header = append(header, p.name)
	}
	for _, p := range r.paths[:gw] {
		header = append(header, "gateway / "+p.name)
	}
	t := &Table{
		Title: fmt.Sprintf("overhead: %d×%d jobs straight to %s and through the gateway, %d rounds",
			overheadSize, overheadSize, fleet, r.sizes.OverheadRounds),
		Header: append(header, "target", "result"),
	}
	for _, row := range r.rows() {
		cells := []string{row.name}
		for p := range r.paths {
			c := "—"
			if r.has(row.mode, p) {
				c = newSpread(r.spreadOf(row, p)).String()
			}
			cells = append(cells, c)
		}
		for b := range gw {
			c := "—"
			if row.ratio && r.has(row.mode, b) {
				c = r.ratio(row, gw, b).String()
			}
			cells = append(cells, c)
		}
		var targets, results []string
		for _, tg := range r.targets() {
			if tg.row != row.name {
				continue
			}
			x := r.ratio(row, gw, r.pathIndex(tg.path))
			targets = append(targets, tg.String())
			results = append(results, verdict(x.ok && tg.met(x.all), fmtRatio(x.all)))
		}
		t.add(append(cells, strings.Join(targets, "; "), strings.Join(results, "; "))...)
	}
	r.notes(t)
	t.Then = append(t.Then, r.roundsTable())
	return t
}

// notes say what ran and how, then where the CPU went in each round.
func (r *overheadRun) notes(t *Table) {
	for _, a := range r.fleet.about {
		t.note("instance %s", a)
	}
	if r.gatewayAbout != "" {
		t.note("gateway: %s", r.gatewayAbout)
	}
	per := max(r.sizes.OverheadTasks/r.sizes.OverheadRounds, 1)
	t.note("a job: a %d×%d EmptyImage saved by SaveImage, each a colour of its own so that ComfyUI's cache never replays one, into an output subfolder per round, path and mode, %d jobs to a folder (comfyfleet-bench/%s/...)",
		overheadSize, overheadSize, overheadFolderJobs, r.id)
	t.note("one at a time: in each round each path runs %s jobs in a row, each submitted when the previous one is done; at once: each path's %s jobs are submitted by %d concurrent clients, and done/s = jobs / (first submit to last done)",
		itoa(per), itoa(r.sizes.OverheadBurst), r.sizes.Clients)
	t.note("each path first runs %d jobs unmeasured (warm-up); in a round the paths take turns one at a time, then at once, in reverse order every other round",
		overheadWarmup)
	t.note("direct: POST /prompt with a client_id, then executing{node:null} for it on that client's /ws, round-robin across the instances; direct + outputs: then GET /history/{id} and GET /view of its image, as the gateway does for every task; gateway: POST /api/tasks, then task_completed on /ws")
	if r.window > 0 {
		t.note("%s: direct, at once only, but at most %d prompts in each instance, each instance's sent one at a time, the next once the one before was answered and, once %d are in it, one finished: the gateway's window at its prefetch (%d), kept by a client that costs nothing else",
			windowPath(r.window), r.window, r.window, r.window-1)
	}
	if r.pathIndex(oneInstance) >= 0 {
		t.note("%s: direct, at once, to the first instance alone: what the gateway in front of every instance has to beat", oneInstance)
	}
	t.note("a cell: the figure over all rounds, then (lo–hi) its range over the rounds, left out when every round gave the same; a ratio likewise, from each round's figures; latency ratios above 1 and rate ratios below 1 are the gateway's cost; a verdict is on the figure over all rounds")
	t.note("CPU per job: user + system time from /proc/<pid>/stat over the phase, per job; client = the bench process; the gateway stays up during the direct paths, where its figure is what it spent meanwhile (ComfyUI's status broadcasts, health probes); other processes = the machine's busy time (/proc/stat) less the gateway's, ComfyUI's and the bench process's")
	switch {
	case r.fleet.simulated():
		t.note("ComfyUI CPU: n/a, the simulated instance runs in the bench process, so its CPU is in the client figure")
	case len(r.fleet.pids) == 0:
		t.note("ComfyUI CPU: n/a, no instance runs on this machine")
	}
	if r.quiet.Below > 0 {
		t.note("each round waited (at most %s) for the other processes to use less than %.2f cores over %s",
			fmtDur(r.quiet.Wait), r.quiet.Below, fmtDur(quietWindow))
	}
	for i, rl := range r.rounds {
		wait := ""
		switch {
		case r.quiet.Below > 0 && rl.quiet:
			wait = fmt.Sprintf(" (started quiet, after %s)", fmtDur(rl.waited))
		case r.quiet.Below > 0:
			wait = fmt.Sprintf(" (started busy, after %s)", fmtDur(rl.waited))
		}
		t.note("round %d, %s to %s%s: %s; load average at its end %s", i+1, rl.start.Format("15:04:05"), rl.end.Format("15:04:05"), wait, rl.cpu.split(len(r.fleet.pids) > 0), rl.loadavg)
	}
}

// roundsTable has each round's figures: a row per path, then the gateway's
// ratios to each other path.
func (r *overheadRun) roundsTable() *Table {
	burst := itoa(r.sizes.OverheadBurst) + " " + modeName(burstMode)
	t := &Table{
		Title: "overhead, round by round",
		Header: []string{"round", "path", "latency p50, ms", "latency p95, ms", "jobs/s", burst + ": done/s",
			"gateway CPU per job, ms", "ComfyUI CPU per job, ms", "client CPU per job, ms", "other processes, cores"},
	}
	comfyMeasured := len(r.fleet.pids) > 0
	gw := r.gatewayPath()
	// both formats a figure of the two modes as "one at a time / at once".
	both := func(round, path int, value func(figures) (float64, bool)) string {
		var s [2]string
		for mode := range s {
			s[mode] = "—"
			if ph := r.phases[mode][path]; round < len(ph) {
				if v, ok := value(figuresOf(ph[round])); ok {
					s[mode] = sig3(v)
				} else {
					s[mode] = "n/a"
				}
			}
		}
		return s[0] + " / " + s[1]
	}
	for round := range r.rounds {
		name := fmt.Sprintf("%d", round+1)
		for p, path := range r.paths {
			cells := []string{name, path.name}
			if ph := r.phases[serialMode][p]; round < len(ph) {
				f := figuresOf(ph[round])
				cells = append(cells, sig3(ms(f.p50)), sig3(ms(f.p95)), sig3(f.rate))
			} else {
				cells = append(cells, "—", "—", "—")
			}
			if ph := r.phases[burstMode][p]; round < len(ph) {
				cells = append(cells, sig3(figuresOf(ph[round]).rate))
			} else {
				cells = append(cells, "—")
			}
			cells = append(cells,
				both(round, p, func(f figures) (float64, bool) { return ms(f.gateway), true }),
				both(round, p, func(f figures) (float64, bool) { return ms(f.comfy), comfyMeasured && f.comfyOK }),
				both(round, p, func(f figures) (float64, bool) { return ms(f.bench), true }),
				both(round, p, func(f figures) (float64, bool) { return f.other, f.machineOK }))
			t.add(cells...)
		}
		for b := range gw {
			cells := []string{name, "gateway / " + r.paths[b].name}
			for _, row := range r.rows()[:4] {
				cells = append(cells, r.roundRatio(row, round, gw, b))
			}
			t.add(append(cells, "—", "—", "—", "—")...)
		}
	}
	t.note("CPU and other processes: one at a time / at once; — where the path does not run in that mode")
	return t
}

// roundRatio is path a's figure of row over path b's in one round.
func (r *overheadRun) roundRatio(row overheadRow, round, a, b int) string {
	pa, pb := r.phases[row.mode][a], r.phases[row.mode][b]
	if round >= len(pa) || round >= len(pb) {
		return "—"
	}
	va, okA := row.value(figuresOf(pa[round]))
	vb, okB := row.value(figuresOf(pb[round]))
	if !okA || !okB || vb == 0 {
		return "n/a"
	}
	return fmtRatio(va / vb)
}
