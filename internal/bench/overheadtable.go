package bench

import (
	"fmt"
	"slices"
	"time"
)

// figures are one path's figures over one or more of its phases.
type figures struct {
	// p50 and p95 are the latencies of the one-at-a-time mode.
	p50, p95 time.Duration
	// rate is jobs per second of elapsed time.
	rate float64
	// gateway, comfy and bench are the CPU time per job of each process.
	gateway, comfy, bench time.Duration
	// other is the cores that other processes used.
	other float64
	// comfyOK and machineOK say whether comfy and other could be read.
	comfyOK, machineOK bool
}

// figuresOf pools phases.
func figuresOf(phases ...phase) figures {
	var lat []time.Duration
	var use cpuUse
	var elapsed time.Duration
	jobs := 0
	for _, ph := range phases {
		lat = append(lat, ph.latencies...)
		use = use.add(ph.cpu)
		elapsed += ph.elapsed
		jobs += ph.jobs
	}
	slices.Sort(lat)
	f := figures{p50: percentile(lat, 50), p95: percentile(lat, 95), other: use.cores(use.other()),
		comfyOK: use.comfyOK, machineOK: use.machineOK}
	if elapsed > 0 {
		f.rate = float64(jobs) / elapsed.Seconds()
	}
	if jobs > 0 {
		n := time.Duration(jobs)
		f.gateway, f.comfy, f.bench = use.gateway/n, use.comfy/n, use.bench/n
	}
	return f
}

// overheadRow is one line of the overhead table: one figure of one mode.
type overheadRow struct {
	mode int
	name string
	// value reads the figure; ok is false where it was not measured.
	value func(f figures) (v float64, ok bool)
	// ratio says whether gateway / direct means something for the figure.
	ratio bool
}

// rows are the overhead table's lines.
func (r *overheadRun) rows() []overheadRow {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	comfyMeasured := len(r.fleet.pids) > 0
	serial, burst := modeName(serialMode), itoa(r.sizes.OverheadBurst)+" "+modeName(burstMode)
	rows := []overheadRow{
		{serialMode, serial + ": latency p50, ms", func(f figures) (float64, bool) { return ms(f.p50), true }, true},
		{serialMode, serial + ": latency p95, ms", func(f figures) (float64, bool) { return ms(f.p95), true }, true},
		{serialMode, serial + ": jobs/s", func(f figures) (float64, bool) { return f.rate, true }, true},
		{burstMode, burst + ": done/s", func(f figures) (float64, bool) { return f.rate, true }, true},
	}
	for mode, prefix := range [2]string{serial, burst} {
		rows = append(rows,
			overheadRow{mode, prefix + ": gateway CPU per job, ms", func(f figures) (float64, bool) { return ms(f.gateway), true }, false},
			overheadRow{mode, prefix + ": ComfyUI CPU per job, ms", func(f figures) (float64, bool) { return ms(f.comfy), comfyMeasured && f.comfyOK }, true},
			overheadRow{mode, prefix + ": client CPU per job, ms", func(f figures) (float64, bool) { return ms(f.bench), true }, true})
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
	if !okA || !okB || allB == 0 || slices.Contains(roundsB, 0) {
		return spread{}
	}
	per := make([]float64, len(roundsA))
	for i := range per {
		per[i] = roundsA[i] / roundsB[i]
	}
	return newSpread(allA/allB, per, true)
}

// table renders the run. The paths are direct, direct + outputs and
// gateway, in that order.
func (r *overheadRun) table() *Table {
	fleet := fmt.Sprintf("%d ComfyUI servers", len(r.fleet.bases))
	switch {
	case r.fleet.simulated():
		fleet = "a simulated instance"
	case len(r.fleet.bases) == 1:
		fleet = "a ComfyUI server"
	}
	t := &Table{
		Title: fmt.Sprintf("overhead: %d×%d jobs straight to %s and through the gateway, %d rounds",
			overheadSize, overheadSize, fleet, r.sizes.OverheadRounds),
		Header: []string{"figure", "direct", "direct + outputs", "gateway", "gateway / direct", "gateway / direct + outputs", "target", "result"},
	}
	gw := len(r.paths) - 1
	for _, row := range r.rows() {
		cells := []string{row.name}
		for p := range r.paths {
			cells = append(cells, newSpread(r.spreadOf(row, p)).String())
		}
		target, result := "", ""
		for b := range gw {
			c := "—"
			if row.ratio {
				c = r.ratio(row, gw, b).String()
			}
			cells = append(cells, c)
		}
		if row.mode == serialMode && row.name == modeName(serialMode)+": jobs/s" {
			x := r.ratio(row, gw, 0)
			target = fmt.Sprintf("gateway / direct ≥ %.2f", overheadTarget)
			result = verdict(x.ok && x.all >= overheadTarget, fmtRatio(x.all))
		}
		t.add(append(cells, target, result)...)
	}
	r.notes(t)
	return t
}

// notes say what ran and how, then where the CPU went in each round.
func (r *overheadRun) notes(t *Table) {
	for _, a := range r.fleet.about {
		t.note("instance %s", a)
	}
	per := max(r.sizes.OverheadTasks/r.sizes.OverheadRounds, 1)
	t.note("a job: a %d×%d EmptyImage saved by SaveImage, each a colour of its own so that ComfyUI's cache never replays one, into an output subfolder per round, path and mode (comfyfleet-bench/%s/...)",
		overheadSize, overheadSize, r.id)
	t.note("one at a time: in each round each path runs %s jobs in a row, each submitted when the previous one is done; at once: each path's %s jobs are submitted by %d concurrent clients, and done/s = jobs / (first submit to last done)",
		itoa(per), itoa(r.sizes.OverheadBurst), r.sizes.Clients)
	t.note("direct: POST /prompt with a client_id, then executing{node:null} for it on that client's /ws, round-robin across the instances; direct + outputs: then GET /history/{id} and GET /view of its image, as the gateway does for every task; gateway: POST /api/tasks, then task_completed on /ws")
	t.note("a cell: the figure over all rounds, then (lo–hi) its range over the rounds, left out when every round gave the same; a ratio likewise, from each round's figures; latency ratios above 1 and rate ratios below 1 are the gateway's cost")
	t.note("CPU per job: user + system time from /proc/<pid>/stat over the phase, per job; client = the bench process; the gateway stays up during the direct paths, where its figure is what it spent meanwhile (ComfyUI's status broadcasts, health probes); other processes = the machine's busy time (/proc/stat) less the gateway's, ComfyUI's and the bench process's")
	switch {
	case r.fleet.simulated():
		t.note("ComfyUI CPU: n/a, the simulated instance runs in the bench process, so its CPU is in the client figure")
	case len(r.fleet.pids) == 0:
		t.note("ComfyUI CPU: n/a, no instance runs on this machine")
	}
	for i, rl := range r.rounds {
		t.note("round %d, %s to %s: %s; load average at its end %s", i+1, rl.start.Format("15:04:05"), rl.end.Format("15:04:05"), rl.cpu.split(len(r.fleet.pids) > 0), rl.loadavg)
	}
}
