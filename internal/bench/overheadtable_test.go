package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// overheadFixture is a run of two rounds with hand-made phases.
func overheadFixture(pids []int) *overheadRun {
	ms := time.Millisecond
	use := func(gateway, comfy, bench, busy time.Duration) cpuUse {
		return cpuUse{wall: time.Second, gateway: gateway, comfy: comfy, bench: bench, busy: busy, comfyOK: true, machineOK: true}
	}
	serial := func(elapsed time.Duration, cpu cpuUse, lat ...time.Duration) phase {
		return phase{jobs: len(lat), latencies: lat, elapsed: elapsed, cpu: cpu}
	}
	burst := func(jobs int, elapsed time.Duration, cpu cpuUse) phase {
		return phase{jobs: jobs, elapsed: elapsed, cpu: cpu}
	}
	quiet := use(0, 10*ms, 2*ms, 112*ms)
	r := &overheadRun{
		sizes: Sizes{OverheadTasks: 4, OverheadRounds: 2, OverheadBurst: 10, Clients: 8},
		fleet: &comfyFleet{bases: []string{"http://127.0.0.1:8188"}, pids: pids, about: []string{"http://127.0.0.1:8188: ComfyUI 0.3.65"}},
		paths: []overheadPath{{name: "direct"}, {name: "direct + outputs"}, {name: "gateway"}},
		id:    "run",
	}
	r.phases[serialMode] = [][]phase{
		{serial(4*ms, quiet, 1*ms, 3*ms), serial(5*ms, quiet, 1*ms, 1*ms)},
		{serial(8*ms, quiet, 2*ms, 2*ms), serial(8*ms, quiet, 2*ms, 2*ms)},
		{serial(10*ms, use(6*ms, 12*ms, 4*ms, 122*ms), 2*ms, 6*ms), serial(10*ms, use(8*ms, 12*ms, 4*ms, 124*ms), 4*ms, 4*ms)},
	}
	// The gateway's runs: submit took 2 ms each in round 1, 1 ms in round 2.
	stages := func(submit float64) stageSums {
		s := stageSums{ok: true}
		s.sum[0], s.count[0] = 2*submit, 2
		s.sum[4], s.count[4] = 0.001, 2
		return s
	}
	r.phases[serialMode][2][0].stages = stages(0.002)
	r.phases[serialMode][2][1].stages = stages(0.001)
	r.phases[burstMode] = [][]phase{
		{burst(10, 20*ms, quiet), burst(10, 20*ms, quiet)},
		{burst(10, 25*ms, quiet), burst(10, 25*ms, quiet)},
		{burst(10, 40*ms, quiet), burst(10, 50*ms, quiet)},
	}
	r.rounds = []roundLoad{
		{start: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC), end: time.Date(2026, 1, 2, 10, 0, 30, 0, time.UTC), cpu: use(time.Second, 500*ms, 500*ms, 2500*ms), loadavg: "1.00 0.50 0.25"},
		{start: time.Date(2026, 1, 2, 10, 0, 30, 0, time.UTC), end: time.Date(2026, 1, 2, 10, 1, 0, 0, time.UTC), cpu: use(time.Second, 500*ms, 500*ms, 2000*ms), loadavg: "1.10 0.60 0.30"},
	}
	return r
}

func TestOverheadTable(t *testing.T) {
	t.Parallel()
	tab := overheadFixture([]int{4242}).table()
	tests := []struct{ row, col, want string }{
		// Pooled p50 of 1, 3, 1, 1 ms; every round's is 1 ms: no range.
		{"one at a time: latency p50, ms", "direct", "1.00"},
		// Pooled p50 of 2, 6, 4, 4 ms; the rounds' are 2 and 4.
		{"one at a time: latency p50, ms", "gateway", "4.00 (2.00–4.00)"},
		{"one at a time: latency p50, ms", "gateway / direct", "4.00 (2.00–4.00)"},
		{"one at a time: latency p95, ms", "gateway / direct + outputs", "3.00 (2.00–3.00)"},
		// 4 jobs in 9 ms; 500/s and 400/s in the rounds.
		{"one at a time: jobs/s", "direct", "444 (400–500)"},
		{"one at a time: jobs/s", "gateway", "200"},
		{"one at a time: jobs/s", "gateway / direct", "0.45 (0.40–0.50)"},
		{"one at a time: jobs/s", "gateway / direct + outputs", "0.80"},
		{"one at a time: jobs/s", "target", ""},
		{"one at a time: latency p50, ms", "target", "gateway / direct ≤ 1.30"},
		{"one at a time: latency p50, ms", "result", "gap: 4.00"},
		{"10 at once: done/s", "target", "gateway / direct ≥ 0.90"},
		{"10 at once: done/s", "result", "gap: 0.44"},
		{"10 at once: done/s", "gateway", "222 (200–250)"},
		{"10 at once: done/s", "gateway / direct", "0.44 (0.40–0.50)"},
		// 14 ms of gateway CPU over 4 jobs; 3 and 4 ms per job in the rounds.
		{"one at a time: gateway CPU per job, ms", "gateway", "3.50 (3.00–4.00)"},
		{"one at a time: gateway CPU per job, ms", "gateway / direct", "—"},
		{"one at a time: ComfyUI CPU per job, ms", "direct", "5.00"},
		{"one at a time: ComfyUI CPU per job, ms", "gateway / direct", "1.20"},
		{"one at a time: client CPU per job, ms", "gateway", "2.00"},
		{"10 at once: client CPU per job, ms", "direct", "0.20"},
		// 122 ms busy less 22 ms measured, over 1 s; 124 less 24 in the second round.
		{"one at a time: other processes, cores", "gateway", "0.10"},
		{"one at a time: other processes, cores", "direct", "0.10"},
		{"10 at once: other processes, cores", "gateway / direct", "—"},
		{"one at a time: run stage submit, mean ms", "gateway", "1.50 (1.00–2.00)"},
		{"one at a time: run stage finish, mean ms", "gateway", "0.50"},
		{"one at a time: run stage submit, mean ms", "direct", "n/a"},
		{"one at a time: run stage queued, mean ms", "gateway", "n/a"},
		{"10 at once: run stage submit, mean ms", "gateway", "n/a"},
	}
	for _, tc := range tests {
		wantCell(t, tab, tc.row, tc.col, tc.want)
	}
	if got, want := len(tab.Rows), 22; got != want {
		t.Errorf("%d rows, want %d", got, want)
	}
	var out bytes.Buffer
	tab.Print(&out)
	for _, want := range []string{
		"### overhead: 64×64 jobs straight to a ComfyUI server and through the gateway, 2 rounds",
		"- instance http://127.0.0.1:8188: ComfyUI 0.3.65\n",
		"each path runs 2 jobs in a row",
		"each path's 10 jobs are submitted by 8 concurrent clients",
		"- round 1, 10:00:00 to 10:00:30: machine busy 2.50 of ",
		"gateway 1.00, ComfyUI 0.50, bench process 0.50, other processes 0.50; load average at its end 1.00 0.50 0.25\n",
		"- round 2, 10:00:30 to 10:01:00:",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestOverheadTableWithoutComfyProcess(t *testing.T) {
	t.Parallel()
	tab := overheadFixture(nil).table()
	for _, col := range []string{"direct", "direct + outputs", "gateway", "gateway / direct"} {
		wantCell(t, tab, "one at a time: ComfyUI CPU per job, ms", col, "n/a")
		wantCell(t, tab, "10 at once: ComfyUI CPU per job, ms", col, "n/a")
	}
	wantCell(t, tab, "one at a time: client CPU per job, ms", "gateway", "2.00")
	var out bytes.Buffer
	tab.Print(&out)
	if got := out.String(); !strings.Contains(got, "ComfyUI CPU: n/a, no instance runs on this machine") ||
		strings.Contains(got, "ComfyUI 0.50") {
		t.Errorf("notes do not say why ComfyUI's CPU is missing, or still give its share:\n%s", got)
	}
}

// twoInstanceFixture is overheadFixture with a second instance and the
// path straight to the first alone, which runs only at once.
func twoInstanceFixture() *overheadRun {
	r := overheadFixture([]int{4242, 4343})
	r.fleet.bases = append(r.fleet.bases, "http://127.0.0.1:8189")
	r.paths = []overheadPath{r.paths[0], r.paths[1], {name: oneInstance}, r.paths[2]}
	quiet := r.phases[burstMode][0][0].cpu
	one := []phase{{jobs: 10, elapsed: 50 * time.Millisecond, cpu: quiet}, {jobs: 10, elapsed: 60 * time.Millisecond, cpu: quiet}}
	r.phases[serialMode] = slices.Insert(r.phases[serialMode], 2, nil)
	r.phases[burstMode] = slices.Insert(r.phases[burstMode], 2, one)
	return r
}

func TestOverheadTableTwoInstances(t *testing.T) {
	t.Parallel()
	tab := twoInstanceFixture().table()
	tests := []struct{ row, col, want string }{
		{"one at a time: latency p50, ms", oneInstance, "—"},
		{"one at a time: latency p50, ms", "gateway / " + oneInstance, "—"},
		{"one at a time: ComfyUI CPU per job, ms", oneInstance, "—"},
		// 20 jobs in 110 ms; 200/s and 167/s in the rounds.
		{"10 at once: done/s", oneInstance, "182 (167–200)"},
		{"10 at once: done/s", "gateway / " + oneInstance, "1.22 (1.20–1.25)"},
		{"10 at once: done/s", "target", "gateway / direct ≥ 0.90; gateway / " + oneInstance + " > 1.00"},
		{"10 at once: done/s", "result", "gap: 0.44; pass"},
		{"one at a time: latency p50, ms", "result", "gap: 4.00"},
	}
	for _, tc := range tests {
		wantCell(t, tab, tc.row, tc.col, tc.want)
	}
	var out bytes.Buffer
	tab.Print(&out)
	if !strings.Contains(out.String(), oneInstance+": direct, at once, to the first instance alone") {
		t.Errorf("notes do not say what %q is:\n%s", oneInstance, out.String())
	}
}

func TestOverheadRoundsTable(t *testing.T) {
	t.Parallel()
	tab := twoInstanceFixture().table()
	if len(tab.Then) != 1 {
		t.Fatalf("%d tables after the overhead table, want the rounds table", len(tab.Then))
	}
	rounds := tab.Then[0]
	// Per round: four paths, then the gateway over each of the other three.
	if got, want := len(rounds.Rows), 2*(4+3); got != want {
		t.Fatalf("%d rows, want %d", got, want)
	}
	cell := func(round, path, col string) string {
		t.Helper()
		i := slices.Index(rounds.Header, col)
		for _, row := range rounds.Rows {
			if row[0] == round && row[1] == path {
				return row[i]
			}
		}
		t.Fatalf("no row for round %s, %s", round, path)
		return ""
	}
	tests := []struct{ round, path, col, want string }{
		// Round 1: the gateway's latencies 2 and 6 ms, direct's 1 and 3.
		{"1", "gateway", "latency p50, ms", "2.00"},
		{"1", "gateway", "latency p95, ms", "6.00"},
		{"1", "gateway / direct", "latency p50, ms", "2.00"},
		{"2", "gateway / direct", "latency p50, ms", "4.00"},
		// 10 jobs in 40 ms, against 20 ms direct and 50 ms to one instance.
		{"1", "gateway", "10 at once: done/s", "250"},
		{"1", "gateway / direct", "10 at once: done/s", "0.50"},
		{"1", "gateway / " + oneInstance, "10 at once: done/s", "1.25"},
		{"1", "gateway / " + oneInstance, "latency p50, ms", "—"},
		{"1", oneInstance, "jobs/s", "—"},
		// 6 ms of gateway CPU over 2 jobs one at a time, none at once.
		{"1", "gateway", "gateway CPU per job, ms", "3.00 / 0.00"},
		{"1", oneInstance, "ComfyUI CPU per job, ms", "— / 1.00"},
		{"2", "direct", "other processes, cores", "0.10 / 0.10"},
	}
	for _, tc := range tests {
		if got := cell(tc.round, tc.path, tc.col); got != tc.want {
			t.Errorf("round %s, %s, %s = %q, want %q", tc.round, tc.path, tc.col, got, tc.want)
		}
	}
	var out bytes.Buffer
	tab.Print(&out)
	if !strings.Contains(out.String(), "\n### overhead, round by round\n") {
		t.Errorf("the rounds table is not printed:\n%s", out.String())
	}
}

func TestOverheadTableQuietGate(t *testing.T) {
	t.Parallel()
	r := overheadFixture([]int{4242})
	r.quiet = quietGate{Below: 0.3, Wait: 2 * time.Minute}
	r.rounds[0].waited, r.rounds[0].quiet = 5*time.Second, true
	r.rounds[1].waited = 2 * time.Minute
	var out bytes.Buffer
	r.table().Print(&out)
	for _, want := range []string{
		"each round waited (at most 120 s) for the other processes to use less than 0.30 cores over 1.00 s",
		"- round 1, 10:00:00 to 10:00:30 (started quiet, after 5.00 s): machine busy",
		"- round 2, 10:00:30 to 10:01:00 (started busy, after 120 s): machine busy",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestWaitQuiet: a threshold no machine reaches lets a round start after
// one look at the machine.
func TestWaitQuiet(t *testing.T) {
	t.Parallel()
	r := &overheadRun{quiet: quietGate{Below: 1000, Wait: time.Minute}}
	waited, quiet, err := r.waitQuiet(t.Context(), 0, t.Logf)
	if err != nil || !quiet || waited < quietWindow {
		t.Errorf("waitQuiet = %s, %v, %v; want a quiet machine after %s", waited, quiet, err, quietWindow)
	}
}

// TestOverheadPrompts: unique colours, a folder per round, path and mode,
// and no more than overheadFolderJobs jobs in one.
func TestOverheadPrompts(t *testing.T) {
	t.Parallel()
	r := &overheadRun{id: "run", colour: 1<<24 - 1}
	got := r.prompts("r2", "gateway", burstMode, overheadFolderJobs+1)
	for i, want := range []string{
		imagePrompt(overheadSize, 1<<24-1, "comfyfleet-bench/run/r2-gateway-burst/000/job"),
		imagePrompt(overheadSize, 1<<24, "comfyfleet-bench/run/r2-gateway-burst/000/job"),
	} {
		if got[i] != want {
			t.Errorf("prompt %d = %s, want %s", i, got[i], want)
		}
	}
	if want := imagePrompt(overheadSize, 1<<24-1+overheadFolderJobs, "comfyfleet-bench/run/r2-gateway-burst/001/job"); got[overheadFolderJobs] != want {
		t.Errorf("prompt %d = %s, want %s", overheadFolderJobs, got[overheadFolderJobs], want)
	}
	if !strings.Contains(got[1], `"color":0`) {
		t.Errorf("colours are not taken modulo 2^24: %s", got[1])
	}
}
