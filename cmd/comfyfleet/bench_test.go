package main

import (
	"slices"
	"testing"
)

func TestBenchFlags(t *testing.T) {
	t.Parallel()
	o, names, err := benchFlags([]string{"overhead", "--comfy", "http://127.0.0.1:8188", "--comfy=http://127.0.0.1:8189",
		"--comfy-pid", "41", "--comfy-pid=42", "--overhead-rounds", "5", "--overhead-burst", "100", "--overhead-tasks", "900",
		"--gateway-set", "scheduler.prefetch=0"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"overhead"}) {
		t.Errorf("names = %q, want [overhead]", names)
	}
	if want := []string{"http://127.0.0.1:8188", "http://127.0.0.1:8189"}; !slices.Equal(o.Comfy, want) {
		t.Errorf("Comfy = %q, want %q", o.Comfy, want)
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
