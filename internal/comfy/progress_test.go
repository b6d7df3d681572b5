package comfy

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// traceEvents decodes a scenario's recorded text frames for promptID (and
// those without a prompt id), dropping the types in skip.
func traceEvents(t *testing.T, scenario, ws, promptID string, skip ...string) []Event {
	t.Helper()
	var evs []Event
	for _, fr := range loadFrames(t, scenario, ws) {
		if fr.Frame != "text" {
			continue
		}
		ev, err := DecodeEvent(fr.JSON)
		if err != nil {
			t.Fatal(err)
		}
		if (ev.PromptID == "" || ev.PromptID == promptID) && !slices.Contains(skip, ev.Type) {
			evs = append(evs, ev)
		}
	}
	return evs
}

// runProgress applies evs and returns the percentages reported as changed,
// failing if the percentage ever goes down or above 99.
func runProgress(t *testing.T, p *Progress, evs []Event) []int {
	t.Helper()
	var changes []int
	last := 0
	for i, ev := range evs {
		pct, changed := p.Apply(ev)
		if pct < last || pct > 99 || pct < 0 {
			t.Fatalf("event %d (%s): percent %d after %d", i, ev.Type, pct, last)
		}
		if changed != (pct != last) {
			t.Fatalf("event %d (%s): changed=%v but %d -> %d", i, ev.Type, changed, last, pct)
		}
		if changed {
			changes = append(changes, pct)
		}
		last = pct
	}
	if p.Percent() != last {
		t.Errorf("Percent() = %d, want %d", p.Percent(), last)
	}
	return changes
}

func TestProgressOverS02Trace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		scenario string
		ws       string
		promptID string
		nodes    int
		skip     []string
		want     []int
	}{
		{"fresh run", "s02_basic_workflow", "ws", "3cc2a991-1a19-499b-9ebd-92558744ea51", 4, nil, []int{25, 50, 75, 99}},
		{
			"fresh run without progress_state (pre-v0.3.45)", "s02_basic_workflow", "ws", "3cc2a991-1a19-499b-9ebd-92558744ea51", 4,
			[]string{EventProgressState}, []int{25, 50, 75, 99},
		},
		{"fully cached rerun", "s02_basic_workflow", "ws", "245548d6-f200-4a8e-b6dc-763c0155386d", 4, nil, []int{99}},
		{"client prompt id", "s02_basic_workflow", "ws", "a8bed3c8-c097-4930-909a-c49c3804f827", 4, nil, []int{25, 50, 75, 99}},
		{"node with progress steps", "s02b_ws_binary_frames", "ws_legacy", "79271c0a-16fc-4e1b-94ad-ecbc4ee0121d", 2, nil, []int{50, 75, 99}},
		{
			"node with progress steps, progress only", "s02b_ws_binary_frames", "ws_legacy", "79271c0a-16fc-4e1b-94ad-ecbc4ee0121d", 2,
			[]string{EventProgressState}, []int{50, 75, 99},
		},
		{"runtime error stops short", "s04_invalid_prompts", "", "bb142bcc-e5b5-487d-b1c6-da7ee478b5cb", 6, nil, []int{16, 33, 50, 66}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			evs := traceEvents(t, tt.scenario, tt.ws, tt.promptID, tt.skip...)
			got := runProgress(t, NewProgress(tt.nodes), evs)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("percent changes (-want +got):\n%s", diff)
			}
		})
	}
}

// ksamplerRun is a txt2img run as a sampler reports it: checkpoint cached,
// then the text encoders, the latent, 20 sampler steps, decode and save.
func ksamplerRun(steps int) []Event {
	const pid = "p1"
	evs := []Event{
		{Type: EventExecutionStart, PromptID: pid},
		{Type: EventExecutionCached, PromptID: pid, Nodes: []string{"4"}},
	}
	for _, n := range []string{"7", "6", "5", "3"} {
		evs = append(evs, Event{Type: EventExecuting, PromptID: pid, Node: n})
	}
	for v := 1; v <= steps; v++ {
		evs = append(evs, Event{Type: EventProgress, PromptID: pid, Node: "3", Value: v, Max: steps})
	}
	for _, n := range []string{"8", "9"} {
		evs = append(evs, Event{Type: EventExecuting, PromptID: pid, Node: n})
	}
	return append(evs,
		Event{Type: EventExecuted, PromptID: pid, Node: "9"},
		Event{Type: EventExecutionSuccess, PromptID: pid},
		Event{Type: EventExecuting, PromptID: pid, NodeNull: true},
	)
}

func TestProgressKSamplerSteps(t *testing.T) {
	t.Parallel()
	got := runProgress(t, NewProgress(7), ksamplerRun(20))

	// 6 nodes to run (7 minus the cached checkpoint): 3 done = 50%, each of
	// the 20 steps adds 1/120, decode starts at 4/6, save at 5/6.
	var want []int
	want = append(want, 16, 33, 50)
	for v := 1; v <= 20; v++ {
		if pct := int(100 * (3 + float64(v)/20) / 6); pct != want[len(want)-1] {
			want = append(want, pct)
		}
	}
	want = append(want, 83, 99)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("percent changes (-want +got):\n%s", diff)
	}
}

func TestProgressNeverGoesDown(t *testing.T) {
	t.Parallel()
	p := NewProgress(2)
	evs := []Event{
		{Type: EventExecuting, Node: "1"},
		{Type: EventProgress, Node: "1", Value: 8, Max: 10},
		{Type: EventProgress, Node: "1", Value: 1, Max: 10}, // a second progress bar in the same node
		{Type: EventProgressState, NodeStates: map[string]NodeState{"1": {State: "running", Value: 0, Max: 1}}},
		{Type: EventProgress, Node: "1", Value: 5, Max: 0},  // bogus max
		{Type: EventProgress, Node: "1", Value: -3, Max: 4}, // bogus value
		{Type: EventExecuting, Node: "2"},
		{Type: EventExecutionInterrupted, Node: "1"},
		{Type: EventExecuting, NodeNull: true},
	}
	if got, want := runProgress(t, p, evs), []int{40, 50}; !cmp.Equal(got, want) {
		t.Errorf("percent changes = %v, want %v", got, want)
	}
}

func TestProgressStaysBelow100WithUnknownNodes(t *testing.T) {
	t.Parallel()
	// Node expansion creates ids the prompt does not have ("5.0.0.3"); a wrong
	// total must not push the percentage past 99.
	p := NewProgress(1)
	var evs []Event
	for i := range 5 {
		evs = append(evs, Event{Type: EventExecuting, Node: fmt.Sprintf("5.0.0.%d", i)})
	}
	runProgress(t, p, evs)
	if p.Percent() != 99 {
		t.Errorf("Percent() = %d, want 99", p.Percent())
	}
}

func TestCountNodes(t *testing.T) {
	t.Parallel()
	n, err := CountNodes(json.RawMessage(`{"1": {"class_type": "EmptyImage"}, "2": {}, "10": {}}`))
	if err != nil || n != 3 {
		t.Errorf("got %d, %v; want 3", n, err)
	}
	if _, err := CountNodes(json.RawMessage(`[1]`)); err == nil {
		t.Errorf("CountNodes of a list: got nil error")
	}
}
