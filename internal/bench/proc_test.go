package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		stat string
		want time.Duration
		err  bool
	}{
		{"plain", "42 (comfyfleet) S 1 42 42 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 9 0 100 0 0", 2900 * time.Millisecond, false},
		// utime 7, stime 3: the name's spaces and parentheses do not shift the fields.
		{"name with spaces and parens", "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 100 * time.Millisecond, false},
		{"no closing paren", "7 (abc R 1", 0, true},
		{"short", "7 (abc) R 1 2 3", 0, true},
		{"not a number", "7 (abc) R 1 7 7 0 -1 0 0 0 0 0 x 3 0 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatCPU([]byte(tc.stat))
			if (err != nil) != tc.err {
				t.Fatalf("parseStatCPU error = %v, want error %t", err, tc.err)
			}
			if got != tc.want {
				t.Errorf("parseStatCPU = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseStatBusy(t *testing.T) {
	t.Parallel()
	// user nice system idle iowait irq softirq steal guest guest_nice: busy
	// is everything but idle, iowait and the guest fields (already in user).
	stat := "cpu  100 2 30 5000 70 4 5 6 50 1\ncpu0 50 1 15 2500 35 2 2 3 25 0\nintr 1 2 3\n"
	got, err := parseStatBusy([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 147 * clockTick; got != want {
		t.Errorf("parseStatBusy = %s, want %s", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6\n", "cpu 1 2 x 4 5 6\n"} {
		if _, err := parseStatBusy([]byte(bad)); err == nil {
			t.Errorf("parseStatBusy(%q): no error", bad)
		}
	}
}

func TestCPUUse(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	s0 := cpuSample{at: at, gateway: time.Second, comfy: 2 * time.Second, bench: 3 * time.Second, busy: 10 * time.Second}
	s1 := cpuSample{at: at.Add(2 * time.Second), gateway: 1500 * time.Millisecond, comfy: 3 * time.Second,
		bench: 3200 * time.Millisecond, busy: 13 * time.Second}
	u := s1.sub(s0)
	if !u.comfyOK || !u.machineOK {
		t.Fatalf("sub = %+v: want both readable", u)
	}
	// 3s busy less 0.5 + 1 + 0.2 measured.
	if got, want := u.other(), 1300*time.Millisecond; got != want {
		t.Errorf("other = %s, want %s", got, want)
	}
	if got, want := u.cores(u.other()), 0.65; got != want {
		t.Errorf("other cores = %v, want %v", got, want)
	}
	if got := (cpuUse{}).add(u); got != u {
		t.Errorf("zero.add(u) = %+v, want u", got)
	}
	sum := u.add(u)
	if sum.wall != 4*time.Second || sum.other() != 2600*time.Millisecond || !sum.machineOK {
		t.Errorf("u.add(u) = %+v: want twice the window", sum)
	}
	// The measured processes can read above the machine's total by a tick
	// each: other is never negative.
	over := cpuUse{wall: time.Second, gateway: 30 * clockTick, busy: 29 * clockTick, machineOK: true}
	if got := over.other(); got != 0 {
		t.Errorf("other = %s, want 0", got)
	}
	s0.machineErr = errTest
	if got := s1.sub(s0); got.machineOK || got.add(u).machineOK || !strings.Contains(got.split(true), "not available") {
		t.Errorf("an unreadable /proc/stat at one end: %+v, split %q", got, got.split(true))
	}
	if got, want := u.split(true), "gateway 0.25, ComfyUI 0.50, bench process 0.10, other processes 0.65"; !strings.Contains(got, want) {
		t.Errorf("split(true) = %q, want it to contain %q", got, want)
	}
	if got, want := u.split(false), "gateway 0.25, bench process 0.10, other processes 0.65"; !strings.Contains(got, want) {
		t.Errorf("split(false) = %q, want it to contain %q", got, want)
	}
}

var errTest = errors.New("test")
