package bench

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"
)

// storageRow is one line of the storage table: one figure of one mode.
type storageRow struct {
	name string
	mode int
	// value reads the figure; ok false when it could not be measured.
	value func(f figures) (v float64, ok bool)
	// diff and ratio fill the S3 − disk and S3 / disk columns.
	diff, ratio bool
}

// rows are the storage table's lines.
func (r *storageRun) rows() []storageRow {
	lat50 := func(f figures) (float64, bool) { return ms(f.p50), true }
	lat95 := func(f figures) (float64, bool) { return ms(f.p95), true }
	rate := func(f figures) (float64, bool) { return f.rate, true }
	gw := func(f figures) (float64, bool) { return ms(f.gateway), true }
	s3 := func(f figures) (float64, bool) { return ms(f.storage), len(r.target.pids) > 0 }
	other := func(f figures) (float64, bool) { return f.other, f.machineOK }
	burst := fmt.Sprintf("%s at once", itoa(r.e.sizes.StorageBurst))
	return []storageRow{
		{"one at a time: task latency p50, ms", serialMode, lat50, true, true},
		{"one at a time: task latency p95, ms", serialMode, lat95, true, true},
		{"one at a time: outputs stored/s", serialMode, rate, false, true},
		{burst + ": outputs stored/s", burstMode, rate, false, true},
		{"one at a time: gateway CPU per task, ms", serialMode, gw, true, true},
		{burst + ": gateway CPU per task, ms", burstMode, gw, true, true},
		{"one at a time: S3 server CPU per task, ms", serialMode, s3, true, false},
		{burst + ": S3 server CPU per task, ms", burstMode, s3, true, false},
		{"one at a time: other processes, cores", serialMode, other, false, false},
		{burst + ": other processes, cores", burstMode, other, false, false},
	}
}

// phases are a leg's phases of a mode, one per round.
func (l *storageLeg) phases(mode int) []phase {
	if mode == serialMode {
		return l.serial
	}
	return l.burst
}

// values reads a row's figure of a leg over all rounds and per round.
func (row storageRow) values(l *storageLeg) (all float64, perRound []float64, ok bool) {
	phases := l.phases(row.mode)
	all, ok = row.value(figuresOf(phases...))
	for _, ph := range phases {
		v, rok := row.value(figuresOf(ph))
		perRound = append(perRound, v)
		ok = ok && rok
	}
	return all, perRound, ok
}

// compare is S3's figure against disk's, by f (a difference or a ratio),
// over all rounds and per round.
func (row storageRow) compare(disk, s3 *storageLeg, f func(s3, disk float64) float64) spread {
	da, dr, dok := row.values(disk)
	sa, sr, sok := row.values(s3)
	per := make([]float64, min(len(dr), len(sr)))
	for i := range per {
		per[i] = f(sr[i], dr[i])
	}
	return newSpread(f(sa, da), per, dok && sok)
}

func minus(a, b float64) float64 { return a - b }

func over(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// signed prints a difference with its sign and its range over the rounds.
func signed(s spread) string {
	if !s.ok || math.IsNaN(s.all) {
		return "n/a"
	}
	f := func(x float64) string {
		if x < 0 {
			return "−" + sig3(-x)
		}
		return "+" + sig3(x)
	}
	if s.lo == s.hi {
		return f(s.all)
	}
	return fmt.Sprintf("%s (%s to %s)", f(s.all), f(s.lo), f(s.hi))
}

// ratioText prints a ratio with two decimals and its range.
func ratioText(s spread) string {
	if !s.ok || math.IsNaN(s.all) {
		return "n/a"
	}
	if s.lo == s.hi {
		return fmtRatio(s.all)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtRatio(s.all), fmtRatio(s.lo), fmtRatio(s.hi))
}

// table renders the run: the jobs' figures on each store, then the
// downloads, then each round.
func (r *storageRun) table() *Table {
	s := r.e.sizes
	disk, s3 := r.legs[0], r.legs[1]
	t := &Table{
		Title: fmt.Sprintf("storage: %d×%d PNG outputs of %s on the disk store and on S3, %d rounds",
			s.StorageImageSide, s.StorageImageSide, fmtBytes(int64(s.StorageOutputSize)), s.StorageRounds),
		Header: storageHeader,
	}
	for _, row := range r.rows() {
		cells := []string{row.name}
		for _, l := range []*storageLeg{disk, s3} {
			cells = append(cells, newSpread(row.values(l)).String())
		}
		d, q := "", ""
		if row.diff {
			d = signed(row.compare(disk, s3, minus))
		}
		if row.ratio {
			q = ratioText(row.compare(disk, s3, over))
		}
		t.add(append(cells, d, q)...)
	}
	r.notes(t)
	t.Then = []*Table{r.downloadsTable(), r.roundsTable()}
	return t
}

// notes say what ran and how.
func (r *storageRun) notes(t *Table) {
	s := r.e.sizes
	per := max(s.StorageTasks/s.StorageRounds, 1)
	g := r.legs[0].g
	t.note("each job saves one %d×%d PNG, padded to %s of incompressible bytes (what such an image weighs; the simulator's own are solid colour), copied by the gateway from its instance over /view into its file store before task_completed",
		s.StorageImageSide, s.StorageImageSide, fmtBytes(int64(s.StorageOutputSize)))
	t.note("each round runs %d jobs one at a time on each store (latency: POST /api/tasks to task_completed on /ws), then %d at once from %d clients (outputs stored/s: first submit to last task_completed), then the downloads; the stores take turns, in reverse order every other round",
		per, s.StorageBurst, s.Clients)
	t.note("a gateway per store, each with %d simulated instances of its own in the bench process: %s; disk: files.driver disk, in its data dir; S3: files.driver s3, files.s3.serve proxy", s.StorageInstances, gatewayAbout(g))
	t.note("S3 server: %s; its CPU per task is what it spent during the phase, so on disk it is the server idling", r.target.about)
	t.note("S3 − disk: the difference over all rounds, then its least and most in a round; S3 / disk likewise")
}

// downloadsTable has the downloads of each way of serving files.
func (r *storageRun) downloadsTable() *Table {
	s := r.e.sizes
	t := &Table{
		Title:  fmt.Sprintf("storage: downloads, the same %d files one at a time per way and round", s.StorageDownloads),
		Header: []string{"way", "latency p50", "latency p95", "the gateway's answer, p50", "MB/s", "gateway CPU per download", "S3 server CPU per download"},
	}
	names := []string{"disk, through the gateway", "S3, through the gateway (proxy)", "S3, 302 to a presigned URL (redirect)"}
	for i, l := range r.legs {
		var lat, first []time.Duration
		var use cpuUse
		var n int64
		var p50s []float64
		for _, d := range l.downloads {
			lat = append(lat, d.latencies...)
			first = append(first, d.first...)
			use = use.add(d.cpu)
			n += d.bytes
			p50s = append(p50s, ms(summarize(slices.Clone(d.latencies)).p50))
		}
		sl := summarize(lat)
		var total time.Duration
		for _, d := range lat {
			total += d
		}
		count := time.Duration(max(len(lat), 1))
		s3cpu := "n/a"
		if len(r.target.pids) > 0 {
			s3cpu = fmtMs(use.storage / count)
		}
		t.add(names[i], newSpread(ms(sl.p50), p50s, true).String()+" ms", fmtMs(percentile(lat, 95)),
			fmtMs(summarize(first).p50), sig3(float64(n)/1e6/total.Seconds()), fmtMs(use.gateway/count), s3cpu)
	}
	t.note("each download reads the whole body; a redirect is followed by hand, so \"the gateway's answer\" is its 302 alone, and the latency adds the GET of the presigned URL from the S3 server")
	t.note("MB/s is bytes over the sum of the latencies, one download at a time; the redirecting gateway runs no measured jobs, only the warm-up that made its files")
	return t
}

// roundsTable has each round's figures.
func (r *storageRun) roundsTable() *Table {
	disk, s3 := r.legs[0], r.legs[1]
	t := &Table{
		Title: "storage, round by round",
		Header: []string{"round", "first", "disk p50", "S3 p50", "S3 − disk", "disk at once/s", "S3 at once/s",
			"gateway CPU/task, disk", "gateway CPU/task, S3", "S3 server CPU/task", "other processes", "load average"},
	}
	for i, load := range r.rounds {
		first := "disk"
		if i%2 == 1 {
			first = "S3"
		}
		fd := []figures{figuresOf(disk.serial[i]), figuresOf(disk.burst[i])}
		fs := []figures{figuresOf(s3.serial[i]), figuresOf(s3.burst[i])}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, l := range r.legs {
			var phs []phase
			if len(l.serial) > i {
				phs = append(phs, l.serial[i], l.burst[i])
			}
			for _, ph := range phs {
				o := ph.cpu.cores(ph.cpu.other())
				lo, hi = min(lo, o), max(hi, o)
			}
		}
		s3cpu := "n/a"
		if len(r.target.pids) > 0 {
			s3cpu = fmt.Sprintf("%s / %s ms", sig3(ms(fs[0].storage)), sig3(ms(fs[1].storage)))
		}
		t.add(itoa(i+1), first, fmtMs(fd[0].p50), fmtMs(fs[0].p50), signed(spread{all: ms(fs[0].p50 - fd[0].p50), ok: true})+" ms",
			sig3(fd[1].rate), sig3(fs[1].rate),
			fmt.Sprintf("%s / %s ms", sig3(ms(fd[0].gateway)), sig3(ms(fd[1].gateway))),
			fmt.Sprintf("%s / %s ms", sig3(ms(fs[0].gateway)), sig3(ms(fs[1].gateway))),
			s3cpu, fmt.Sprintf("%.2f–%.2f cores", lo, hi), load.loadavg)
	}
	t.note("CPU per task: one at a time / at once; other processes: the least and the most of the round's job phases (the machine less the gateway, the S3 server and the bench)")
	for i, load := range r.rounds {
		u := load.cpu
		if !u.machineOK || u.wall <= 0 {
			t.note("round %d: CPU shares not available", i+1)
			continue
		}
		quiet := ""
		if r.e.opts.QuietBelow > 0 {
			quiet = fmt.Sprintf("; waited %s for other processes below %.2f cores", fmtDur(load.waited), r.e.opts.QuietBelow)
			if !load.quiet {
				quiet += ", and started without"
			}
		}
		t.note("round %d: machine busy %.2f of %d cores: the measured gateway %.2f, S3 server %.2f, bench process %.2f, other processes %.2f%s",
			i+1, u.cores(u.busy), runtime.NumCPU(), u.cores(u.gateway), u.cores(u.storage), u.cores(u.bench), u.cores(u.other()), quiet)
	}
	return t
}
