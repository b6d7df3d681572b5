package bench

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestQuickSuite runs every scenario with --quick sizes against the real
// binary and checks the tables, not the timings: each scenario already
// fails unless every task completed and ran once.
func TestQuickSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs every scenario; skipped with -short")
	}
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" && os.Getenv("CI") != "" {
		t.Fatal("TEST_REDIS_URL is not set but CI is: the bench's Redis rows must run in CI")
	}
	weed := os.Getenv(envSeaweedFSBin)
	if weed == "" && os.Getenv("CI") != "" {
		t.Fatal(envSeaweedFSBin + " is not set but CI is: the storage scenario's S3 rows must run in CI")
	}
	if weed == "" {
		t.Log(envSeaweedFSBin + " unset: the storage scenario's S3 rows are skipped; set it to run them")
	}
	var out bytes.Buffer
	opts := Options{
		Gateway: []string{buildBinary(t)}, Quick: true, RedisURL: redisURL,
		Out: &out, Log: testWriter{t}, TempDir: t.TempDir(),
	}
	if redisURL == "" {
		opts.RedisURL = "redis://127.0.0.1:1/0" // nothing listens: the Redis rows say skipped
		t.Log("TEST_REDIS_URL unset: the Redis rows are skipped; set it to run them")
	}
	results, err := Run(t.Context(), opts, []string{"all"})
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(results), len(Scenarios()); got != want {
		t.Fatalf("%d results, want %d", got, want)
	}
	sizes := Sizes{}.withDefaults(true)
	for _, r := range results {
		if !strings.Contains(out.String(), "### "+r.Table.Title) {
			t.Errorf("%s: title %q not printed", r.Scenario, r.Table.Title)
		}
		check, ok := tableChecks[r.Scenario]
		if !ok {
			t.Errorf("%s: no check for this scenario", r.Scenario)
			continue
		}
		check(t, r.Table, sizes, available{redis: redisURL != "", s3: weed != ""})
	}
}

// available says which servers the quick suite had.
type available struct{ redis, s3 bool }

// tableChecks check each scenario's table: every row there, counts as asked.
var tableChecks = map[string]func(t *testing.T, tab *Table, s Sizes, have available){
	"throughput": func(t *testing.T, tab *Table, s Sizes, have available) {
		wantCell(t, tab, "sqlite", "tasks", itoa(s.ThroughputTasks))
		wantResult(t, tab, "sqlite")
		if have.redis {
			wantCell(t, tab, "redis", "tasks", itoa(s.ThroughputTasks))
			wantResult(t, tab, "redis")
		}
	},
	"gap": func(t *testing.T, tab *Table, s Sizes, _ available) {
		// Every instance's first run has no gap before it.
		wantCell(t, tab, "sqlite", "gaps", itoa(s.GapTasks-s.GapInstances))
		wantResult(t, tab, "sqlite")
	},
	"efficiency": func(t *testing.T, tab *Table, _ Sizes, _ available) {
		wantResult(t, tab, "gateway queue (sqlite)")
		if tab.Row("round-robin into ComfyUI queues") == nil {
			t.Errorf("%s: no round-robin row", tab.Title)
		}
	},
	"overhead": func(t *testing.T, tab *Table, s Sizes, _ available) {
		if got := len(tab.Rows); got != 22 {
			t.Fatalf("%s: %d rows, want 22", tab.Title, got)
		}
		wantResult(t, tab, "one at a time: latency p50, ms")
		wantResult(t, tab, itoa(s.OverheadBurst)+" at once: done/s")
		for _, row := range []string{"one at a time: latency p50, ms", "one at a time: jobs/s", itoa(s.OverheadBurst) + " at once: done/s"} {
			for _, col := range []string{"direct", "direct + outputs", "gateway", "gateway / direct"} {
				if got := tab.Cell(row, col); got == "" || got == "n/a" {
					t.Errorf("%s: row %q, %s = %q, want a figure", tab.Title, row, col, got)
				}
			}
		}
		// The gateway reports where its runs' time went.
		for _, mode := range []string{"one at a time", itoa(s.OverheadBurst) + " at once"} {
			for _, stage := range runStages {
				row := mode + ": run stage " + stage + ", mean ms"
				if got := tab.Cell(row, "gateway"); got == "" || got == "n/a" {
					t.Errorf("%s: row %q, gateway = %q, want a figure", tab.Title, row, got)
				}
			}
		}
		// The simulated instance runs in the bench process.
		wantCell(t, tab, "one at a time: ComfyUI CPU per job, ms", "direct", "n/a")
		// The gateway's window kept straight (prefetch 1 by default).
		window := windowPath(2)
		if got := tab.Cell(itoa(s.OverheadBurst)+" at once: done/s", window); got == "" || got == "n/a" || got == "—" {
			t.Errorf("%s: %s done/s = %q, want a figure", tab.Title, window, got)
		}
		// Four paths, then the gateway's ratio to each of the three others.
		if len(tab.Then) != 1 || len(tab.Then[0].Rows) != s.OverheadRounds*(4+3) {
			t.Errorf("%s: want a rounds table of %d rows", tab.Title, s.OverheadRounds*(4+3))
		}
	},
	"fanout": func(t *testing.T, tab *Table, s Sizes, _ available) {
		n := s.FanoutRate * int(s.FanoutDuration/time.Second)
		due := itoa(n * s.FanoutClients / s.FanoutUsers)
		wantCell(t, tab, "task_completed receipts", "value", due+" of "+due)
		wantCell(t, tab, "clients dropped (send queue overflow)", "value", "0")
		wantCell(t, tab, "clients closed otherwise", "value", "0")
		if got := tab.Cell("tasks completed", "value"); !strings.HasPrefix(got, itoa(n)+" at ") {
			t.Errorf("%s: tasks completed = %q, want %d", tab.Title, got, n)
		}
	},
	"scale": func(t *testing.T, tab *Table, s Sizes, _ available) {
		for _, row := range []string{"tasks submitted", "submit rate", "gateway RSS after submitting / peak", "store size",
			"GET /api/tasks?status=pending, first page: p50 / p99", "same at offset " + itoa(s.ScaleTasks-20) + ": p50 / p99",
			"GET /api/monitor/overview: p50 / p99", "gateway CPU with " + itoa(s.ScaleInstances) + " instances",
			"gateway RSS with " + itoa(s.ScaleInstances) + " instances"} {
			if tab.Row(row) == nil {
				t.Errorf("%s: no row %q", tab.Title, row)
			}
		}
		if got := tab.Cell("tasks submitted", "value"); !strings.HasPrefix(got, itoa(s.ScaleTasks)+" in ") {
			t.Errorf("%s: tasks submitted = %q", tab.Title, got)
		}
	},
	"mixed": func(t *testing.T, tab *Table, s Sizes, _ available) {
		wantCell(t, tab, "by capability", "failed runs", "0")
		wantCell(t, tab, "by capability", "runs", itoa(s.MixedTasks))
		wantCell(t, tab, "capability-blind, failed tasks submitted again", "tasks", itoa(s.MixedTasks))
	},
	"storage": func(t *testing.T, tab *Table, s Sizes, have available) {
		if !have.s3 {
			if got := tab.Cell("S3", "disk"); !strings.HasPrefix(got, "skipped: ") {
				t.Errorf("%s: without an S3 server, S3 row = %q, want skipped", tab.Title, got)
			}
			return
		}
		if got := len(tab.Rows); got != 10 {
			t.Fatalf("%s: %d rows, want 10", tab.Title, got)
		}
		for _, row := range []string{"one at a time: task latency p50, ms", "one at a time: outputs stored/s",
			itoa(s.StorageBurst) + " at once: outputs stored/s", "one at a time: gateway CPU per task, ms",
			"one at a time: S3 server CPU per task, ms"} {
			for _, col := range []string{"disk", "S3"} {
				if got := tab.Cell(row, col); got == "" || got == "n/a" {
					t.Errorf("%s: row %q, %s = %q, want a figure", tab.Title, row, col, got)
				}
			}
		}
		if got := tab.Cell("one at a time: task latency p50, ms", "S3 − disk"); got == "" || got == "n/a" {
			t.Errorf("%s: latency S3 − disk = %q, want a figure", tab.Title, got)
		}
		if len(tab.Then) != 2 || len(tab.Then[0].Rows) != 3 || len(tab.Then[1].Rows) != s.StorageRounds {
			t.Fatalf("%s: want a downloads table of 3 rows and a rounds table of %d", tab.Title, s.StorageRounds)
		}
		for _, row := range tab.Then[0].Rows {
			if row[1] == "" || strings.HasPrefix(row[1], "n/a") {
				t.Errorf("%s: downloads %q: latency %q, want a figure", tab.Title, row[0], row[1])
			}
		}
	},
	"placement": func(t *testing.T, tab *Table, _ Sizes, _ available) {
		for _, row := range []string{"warm", "fifo"} {
			if tab.Row(row) == nil {
				t.Errorf("%s: no row %q", tab.Title, row)
			}
		}
		wantCell(t, tab, "fifo", "makespan vs fifo", "1.00")
	},
}

func wantCell(t *testing.T, tab *Table, row, col, want string) {
	t.Helper()
	if tab.Row(row) == nil {
		t.Errorf("%s: no row %q", tab.Title, row)
		return
	}
	if got := tab.Cell(row, col); got != want {
		t.Errorf("%s: row %q, %s = %q, want %q", tab.Title, row, col, got, want)
	}
}

// wantResult checks that a row has a pass or gap verdict.
func wantResult(t *testing.T, tab *Table, row string) {
	t.Helper()
	got := tab.Cell(row, "result")
	if got != "pass" && !strings.HasPrefix(got, "gap: ") {
		t.Errorf("%s: row %q, result = %q, want pass or gap", tab.Title, row, got)
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "comfyfleet")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/comfyfleet/comfyfleet/cmd/comfyfleet")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestOverheadWithProfiles runs the overhead scenario with CPU profiles asked
// for: the gateway then serves /metrics on its metrics listener only, and
// the run stages must still be read from there.
func TestOverheadWithProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a scenario; skipped with -short")
	}
	var out bytes.Buffer
	dir := t.TempDir()
	opts := Options{
		Gateway: []string{buildBinary(t)}, Quick: true, Out: &out, Log: testWriter{t}, TempDir: t.TempDir(),
		ProfileDir: dir, ProfileTime: time.Second,
	}
	results, err := Run(t.Context(), opts, []string{"overhead"})
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	tab := results[0].Table
	for _, stage := range runStages {
		row := "one at a time: run stage " + stage + ", mean ms"
		if got := tab.Cell(row, "gateway"); got == "" || got == "n/a" {
			t.Errorf("row %q, gateway = %q, want a figure", row, got)
		}
	}
	// The burst's profile is left out when the serial one still runs then.
	if fi, err := os.Stat(filepath.Join(dir, "overhead-serial.pprof")); err != nil || fi.Size() == 0 {
		t.Errorf("profile overhead-serial.pprof: %v", err)
	}
}
