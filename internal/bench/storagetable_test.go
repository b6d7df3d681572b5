package bench

import (
	"strings"
	"testing"
	"time"
)

// storageFixture is a run of two rounds with hand-made phases.
func storageFixture() *storageRun {
	ms := time.Millisecond
	use := func(gateway, storage, busy time.Duration) cpuUse {
		return cpuUse{wall: time.Second, gateway: gateway, storage: storage, busy: busy, comfyOK: true, machineOK: true}
	}
	serial := func(cpu cpuUse, lat ...time.Duration) phase {
		var elapsed time.Duration
		for _, d := range lat {
			elapsed += d
		}
		return phase{jobs: len(lat), latencies: lat, elapsed: elapsed, cpu: cpu}
	}
	burst := func(jobs int, elapsed time.Duration, cpu cpuUse) phase {
		return phase{jobs: jobs, elapsed: elapsed, cpu: cpu}
	}
	dl := func(lat ...time.Duration) downloadPhase {
		return downloadPhase{latencies: lat, first: lat, bytes: int64(len(lat)) * 1_000_000, cpu: use(2*ms, 4*ms, 100*ms)}
	}
	e := &env{opts: Options{QuietBelow: 0.5}, sizes: Sizes{StorageTasks: 4, StorageRounds: 2, StorageBurst: 10, Clients: 8,
		StorageInstances: 2, StorageDownloads: 2, StorageImageSide: 1024, StorageOutputSize: 1_500_000}}
	r := &storageRun{e: e, target: &s3Target{pids: []int{4242}, about: "SeaweedFS"}}
	g := &gateway{e: e, spec: gatewaySpec{store: "sqlite", health: 5 * time.Second}}
	r.legs = []*storageLeg{
		{name: "disk", g: g,
			serial:    []phase{serial(use(10*ms, 0, 500*ms), 5*ms, 5*ms), serial(use(10*ms, 0, 500*ms), 6*ms, 6*ms)},
			burst:     []phase{burst(10, 100*ms, use(50*ms, 0, 500*ms)), burst(10, 50*ms, use(50*ms, 0, 500*ms))},
			downloads: []downloadPhase{dl(2*ms, 2*ms), dl(2*ms, 2*ms)}},
		{name: "S3", g: g,
			serial:    []phase{serial(use(20*ms, 40*ms, 500*ms), 25*ms, 25*ms), serial(use(20*ms, 40*ms, 500*ms), 36*ms, 36*ms)},
			burst:     []phase{burst(10, 400*ms, use(100*ms, 200*ms, 500*ms)), burst(10, 500*ms, use(100*ms, 200*ms, 500*ms))},
			downloads: []downloadPhase{dl(5*ms, 5*ms), dl(5*ms, 5*ms)}},
		{name: "S3, redirect", g: g, redirect: true, downloads: []downloadPhase{dl(4*ms, 4*ms), dl(4*ms, 4*ms)}},
	}
	r.rounds = []roundLoad{
		{cpu: use(200*ms, 300*ms, 1500*ms), loadavg: "1.00 0.50 0.25", waited: 2 * time.Second, quiet: true},
		{cpu: use(200*ms, 300*ms, 1500*ms), loadavg: "1.10 0.60 0.30", waited: time.Minute},
	}
	return r
}

func TestStorageTable(t *testing.T) {
	t.Parallel()
	tab := storageFixture().table()
	tests := []struct{ row, col, want string }{
		// disk's rounds: 5 and 6 ms; S3's: 25 and 36 ms.
		{"one at a time: task latency p50, ms", "disk", "5.00 (5.00–6.00)"},
		{"one at a time: task latency p50, ms", "S3", "25.0 (25.0–36.0)"},
		{"one at a time: task latency p50, ms", "S3 − disk", "+20.0 (+20.0 to +30.0)"},
		{"one at a time: task latency p50, ms", "S3 / disk", "5.00 (5.00–6.00)"},
		// 4 jobs in 22 ms against 4 in 122 ms.
		{"one at a time: outputs stored/s", "disk", "182 (167–200)"},
		{"one at a time: outputs stored/s", "S3 − disk", ""},
		// 20 outputs in 150 ms against 20 in 900 ms.
		{"10 at once: outputs stored/s", "disk", "133 (100–200)"},
		{"10 at once: outputs stored/s", "S3", "22.2 (20.0–25.0)"},
		{"one at a time: gateway CPU per task, ms", "S3 − disk", "+5.00"},
		{"one at a time: S3 server CPU per task, ms", "S3", "20.0"},
		{"10 at once: S3 server CPU per task, ms", "disk", "0.00"},
		{"one at a time: other processes, cores", "S3", "0.44"},
	}
	for _, tc := range tests {
		if got := tab.Cell(tc.row, tc.col); got != tc.want {
			t.Errorf("%s, %s = %q, want %q", tc.row, tc.col, got, tc.want)
		}
	}
	downloads, rounds := tab.Then[0], tab.Then[1]
	if got := downloads.Cell("S3, 302 to a presigned URL (redirect)", "latency p50"); got != "4.00 ms" {
		t.Errorf("redirect latency p50 = %q, want 4.00 ms", got)
	}
	if got := downloads.Cell("S3, through the gateway (proxy)", "MB/s"); got != "200" {
		t.Errorf("proxy MB/s = %q, want 200", got)
	}
	if got := rounds.Cell("2", "S3 − disk"); got != "+30.0 ms" {
		t.Errorf("round 2, S3 − disk = %q, want +30.0 ms", got)
	}
	if got := rounds.Cell("2", "first"); got != "S3" {
		t.Errorf("round 2 first = %q, want S3", got)
	}
	notes := strings.Join(rounds.Notes, "\n")
	for _, want := range []string{"round 1: machine busy", "waited 2.00 s for other processes below 0.50 cores\n", "waited 60.0 s for other processes below 0.50 cores, and started without"} {
		if !strings.Contains(notes+"\n", want) {
			t.Errorf("round notes lack %q:\n%s", want, notes)
		}
	}
}
