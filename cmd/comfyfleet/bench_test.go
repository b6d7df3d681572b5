package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBenchFlags(t *testing.T) {
	t.Parallel()
	o, names, err := benchFlags([]string{"overhead", "--comfy", "http://127.0.0.1:8188", "--comfy=http://127.0.0.1:8189",
		"--comfy-pid", "41", "--comfy-pid=42", "--overhead-rounds", "5", "--overhead-burst", "100", "--overhead-tasks", "900",
		"--gateway-set", "scheduler.prefetch=0", "--overhead-quiet", "0.3", "--overhead-quiet-wait", "30s"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"overhead"}) {
		t.Errorf("names = %q, want [overhead]", names)
	}
	if want := []string{"http://127.0.0.1:8188", "http://127.0.0.1:8189"}; !slices.Equal(o.Comfy, want) {
		t.Errorf("Comfy = %q, want %q", o.Comfy, want)
	}
	if o.QuietBelow != 0.3 || o.QuietWait != 30*time.Second {
		t.Errorf("QuietBelow, QuietWait = %v, %v; want 0.3, 30s", o.QuietBelow, o.QuietWait)
	}
	if want := []string{"scheduler.prefetch=0"}; !slices.Equal(o.GatewaySets, want) {
		t.Errorf("GatewaySets = %q, want %q", o.GatewaySets, want)
	}
	if want := []int{41, 42}; !slices.Equal(o.ComfyPIDs, want) {
		t.Errorf("ComfyPIDs = %v, want %v", o.ComfyPIDs, want)
	}
	if s := o.Sizes; s.OverheadRounds != 5 || s.OverheadBurst != 100 || s.OverheadTasks != 900 {
		t.Errorf("sizes = %+v, want 5 rounds, bursts of 100, 900 tasks", s)
	}

	o, names, err = benchFlags([]string{"storage", "--seaweedfs-bin", "/opt/weed", "--storage-tasks", "60", "--storage-rounds", "2",
		"--storage-burst", "10", "--storage-output-size", "400000", "--s3-endpoint", "https://s3.example.com", "--s3-bucket", "fleet"})
	if err != nil || !slices.Equal(names, []string{"storage"}) {
		t.Fatalf("storage flags: %q, %v", names, err)
	}
	if s := o.Sizes; o.SeaweedFSBin != "/opt/weed" || o.S3Endpoint != "https://s3.example.com" || o.S3Bucket != "fleet" ||
		s.StorageTasks != 60 || s.StorageRounds != 2 || s.StorageBurst != 10 || s.StorageOutputSize != 400000 {
		t.Errorf("storage flags: %+v", o)
	}

	o, _, err = benchFlags([]string{"overhead"})
	if err != nil || o.Comfy != nil || o.ComfyPIDs != nil || o.Sizes.OverheadRounds != 0 {
		t.Errorf("no flags: %+v, %v; want no URLs, no pids, default rounds", o, err)
	}
	for _, bad := range [][]string{{"overhead", "--comfy-pid", "x"}, {"overhead", "--comfy-pid", "0"}, {"overhead", "--gateway-set", "x"}, {"--quick"}} {
		if _, _, err := benchFlags(bad); err == nil {
			t.Errorf("benchFlags(%q): no error", bad)
		}
	}
}

// TestBenchOverhead runs "comfyfleet bench overhead" end to end with few
// jobs: on its default simulated instance, then with --comfy against two
// simulated instances of a "comfyfleet sim" process, as it would run
// against real ComfyUI servers (their process found by port, its CPU read).
func TestBenchOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	small := []string{"--overhead-tasks", "15", "--overhead-burst", "8", "--overhead-rounds", "3"}

	t.Run("simulator", func(t *testing.T) {
		// A quiet threshold no machine reaches: each round looks once.
		out := runBenchCmd(t, bin, append([]string{"bench", "overhead", "--overhead-quiet", "100"}, small...)...)
		for _, want := range []string{
			"### overhead: 64×64 jobs straight to a simulated instance and through the gateway, 3 rounds",
			"| one at a time: latency p50, ms ", "| 8 at once: done/s ", "gateway / direct ≤ 1.30", "gateway / direct ≥ 0.90",
			"| one at a time: gateway CPU per job, ms ", "| one at a time: other processes, cores ",
			"### overhead, round by round", "- round 3, ", "(started quiet, after ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("comfy URLs", func(t *testing.T) {
		p1, p2 := freePort(t), freePort(t)
		sim := exec.Command(bin, "sim", "--ports", fmt.Sprintf("%d,%d", p1, p2))
		sim.Stdout, sim.Stderr = io.Discard, io.Discard
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sim.Process.Kill(); _ = sim.Wait() }()
		for _, p := range []int{p1, p2} {
			waitListening(t, p)
		}
		args := append([]string{"bench", "overhead", "--comfy", fmt.Sprintf("http://127.0.0.1:%d", p1),
			"--comfy", fmt.Sprintf("http://127.0.0.1:%d", p2)}, small...)
		out := runBenchCmd(t, bin, args...)
		for _, want := range []string{
			"### overhead: 64×64 jobs straight to 2 ComfyUI servers and through the gateway, 3 rounds",
			fmt.Sprintf("pid %d (found by its listening port)", sim.Process.Pid),
			"gateway / direct to one instance > 1.00",
			"### overhead, round by round",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		// ComfyUI's CPU is measured: a figure under each path (its ratios
		// may be n/a, with so few jobs and 10 ms clock ticks).
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "| one at a time: ComfyUI CPU per job, ms ") {
				continue
			}
			cells := strings.Split(line, "|")
			// "", the figure, then direct, direct + outputs, direct with the
			// gateway's window, direct to one instance, gateway (the last
			// three at once only, hence "—" here but for the gateway).
			for _, c := range cells[2:7] {
				if c = strings.TrimSpace(c); c == "" || c == "n/a" {
					t.Errorf("ComfyUI CPU not measured: %s", line)
				}
			}
		}
	})
}

// runBenchCmd runs the binary and returns its standard output; the progress
// lines go to the test log.
func runBenchCmd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("%s:\n%s", strings.Join(args, " "), stderr.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	return stdout.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeAddr(t))
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitListening waits until something accepts connections on the port.
func waitListening(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on port %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
