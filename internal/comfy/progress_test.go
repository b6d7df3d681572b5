package comfy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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

// tracePrompt reads the recorded prompt testdata/workflow_<name>.json.
func tracePrompt(t *testing.T, name string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "workflow_"+name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// change is what Apply reported as changed.
type change struct {
	Percent int
	At      Position
}

// runProgress applies evs and returns the changes Apply reported, failing
// if the percentage ever goes down or above 99, or if Apply's changed flag
// disagrees with what changed.
func runProgress(t *testing.T, p *Progress, evs []Event) []change {
	t.Helper()
	var changes []change
	last, lastAt := 0, Position{}
	for i, ev := range evs {
		pct, changed := p.Apply(ev)
		if pct < last || pct > 99 || pct < 0 {
			t.Fatalf("event %d (%s): percent %d after %d", i, ev.Type, pct, last)
		}
		at := p.Position()
		if changed != (pct != last || at != lastAt) {
			t.Fatalf("event %d (%s): changed=%v but %d %+v -> %d %+v", i, ev.Type, changed, last, lastAt, pct, at)
		}
		if changed {
			changes = append(changes, change{pct, at})
		}
		last, lastAt = pct, at
	}
	if p.Percent() != last {
		t.Errorf("Percent() = %d, want %d", p.Percent(), last)
	}
	return changes
}

// percents lists the percentages of changes that changed it, in order.
func percents(changes []change) []int {
	var out []int
	last := 0
	for _, c := range changes {
		if c.Percent != last {
			out = append(out, c.Percent)
		}
		last = c.Percent
	}
	return out
}

func TestProgressOverTraces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		scenario string
		ws       string
		promptID string
		prompt   string
		skip     []string
		want     []int
	}{
		{"fresh run", "s02_basic_workflow", "ws", "3cc2a991-1a19-499b-9ebd-92558744ea51", "s02_basic", nil, []int{25, 50, 75, 99}},
		{
			"fresh run without progress_state (pre-v0.3.45)", "s02_basic_workflow", "ws", "3cc2a991-1a19-499b-9ebd-92558744ea51", "s02_basic",
			[]string{EventProgressState}, []int{25, 50, 75, 99},
		},
		{"fully cached rerun", "s02_basic_workflow", "ws", "245548d6-f200-4a8e-b6dc-763c0155386d", "s02_basic", nil, []int{99}},
		{"client prompt id", "s02_basic_workflow", "ws", "a8bed3c8-c097-4930-909a-c49c3804f827", "s02_basic", nil, []int{25, 50, 75, 99}},
		// The streaming node reports 2 steps: 3 units, the first node 1.
		{"node with progress steps", "s02b_ws_binary_frames", "ws_legacy", "79271c0a-16fc-4e1b-94ad-ecbc4ee0121d", "s02b_ws_image", nil, []int{50, 75, 99}},
		{
			"node with progress steps, progress only", "s02b_ws_binary_frames", "ws_legacy", "79271c0a-16fc-4e1b-94ad-ecbc4ee0121d", "s02b_ws_image",
			[]string{EventProgressState}, []int{50, 75, 99},
		},
		{"runtime error stops short", "s04_invalid_prompts", "", "bb142bcc-e5b5-487d-b1c6-da7ee478b5cb", "s04_runtime_error", nil, []int{16, 33, 50, 66}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			evs := traceEvents(t, tt.scenario, tt.ws, tt.promptID, tt.skip...)
			got := percents(runProgress(t, NewProgress(tracePrompt(t, tt.prompt)), evs))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("percent changes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProgressPositionOverTrace: with progress_state (v0.3.45+) each step
// is first reported by progress_state, then by progress; the position
// carries the node, its class and the step either way.
func TestProgressPositionOverTrace(t *testing.T) {
	t.Parallel()
	for _, skip := range [][]string{nil, {EventProgressState}} {
		t.Run(fmt.Sprintf("skip %v", skip), func(t *testing.T) {
			t.Parallel()
			evs := traceEvents(t, "s02b_ws_binary_frames", "ws_legacy", "79271c0a-16fc-4e1b-94ad-ecbc4ee0121d", skip...)
			got := runProgress(t, NewProgress(tracePrompt(t, "s02b_ws_image")), evs)
			save := func(v, m int) Position {
				return Position{NodeID: "2", ClassType: "SaveImageWebsocket", Value: v, Max: m}
			}
			want := []change{
				{0, Position{NodeID: "1", ClassType: "EmptyImage"}},
				{50, Position{NodeID: "1", ClassType: "EmptyImage"}},
				{50, save(0, 0)},
				{50, save(0, 2)},
				{75, save(1, 2)},
				{99, save(2, 2)},
			}
			if skip != nil { // the node is done when execution_success says so
				want = []change{
					{0, Position{NodeID: "1", ClassType: "EmptyImage"}},
					{50, save(0, 0)},
					{50, save(0, 2)},
					{75, save(1, 2)},
					{99, save(1, 2)},
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

// t2iPrompt is a txt2img prompt whose sampler's steps come from stepsInput.
func t2iPrompt(stepsInput string) json.RawMessage {
	return json.RawMessage(`{
		"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
		"6": {"class_type": "CLIPTextEncode", "_meta": {"title": "Positive"}, "inputs": {"text": "a cat", "clip": ["4", 1]}},
		"7": {"class_type": "CLIPTextEncode", "_meta": {"title": "Negative"}, "inputs": {"text": "", "clip": ["4", 1]}},
		"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
		"3": {"class_type": "KSampler", "_meta": {"title": "Main sampler"}, "inputs": {"steps": ` + stepsInput + `, "model": ["4", 0]}},
		"8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
		"9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}}
	}`)
}

// ksamplerRun is a txt2img run as a sampler reports it: checkpoint cached,
// then the text encoders, the latent, the sampler's steps, decode and save.
// With states, each step is announced by progress_state first (v0.3.45+).
func ksamplerRun(steps int, states bool) []Event {
	const pid = "p1"
	evs := []Event{
		{Type: EventExecutionStart, PromptID: pid},
		{Type: EventExecutionCached, PromptID: pid, Nodes: []string{"4"}},
	}
	for _, n := range []string{"7", "6", "5", "3"} {
		evs = append(evs, Event{Type: EventExecuting, PromptID: pid, Node: n, DisplayNode: n})
	}
	for v := 1; v <= steps; v++ {
		if states {
			evs = append(evs, Event{Type: EventProgressState, PromptID: pid, NodeStates: map[string]NodeState{
				"7": {State: "finished", Value: 1, Max: 1}, "3": {State: "running", Value: float64(v), Max: float64(steps)},
			}})
		}
		evs = append(evs, Event{Type: EventProgress, PromptID: pid, Node: "3", Value: v, Max: steps})
	}
	for _, n := range []string{"8", "9"} {
		evs = append(evs, Event{Type: EventExecuting, PromptID: pid, Node: n, DisplayNode: n})
	}
	return append(evs,
		Event{Type: EventExecuted, PromptID: pid, Node: "9"},
		Event{Type: EventExecutionSuccess, PromptID: pid},
		Event{Type: EventExecuting, PromptID: pid, NodeNull: true},
	)
}

// TestProgressSamplerStepsWeigh: the sampler's 20 steps are 20 units of
// the 25 to run (6 nodes, the checkpoint cached), known from its steps
// input before it starts, so each step adds 4%.
func TestProgressSamplerStepsWeigh(t *testing.T) {
	t.Parallel()
	for _, states := range []bool{false, true} {
		t.Run(fmt.Sprintf("progress_state %v", states), func(t *testing.T) {
			t.Parallel()
			got := runProgress(t, NewProgress(t2iPrompt("20")), ksamplerRun(20, states))
			want := []int{4, 8, 12}
			for v := 1; v <= 20; v++ {
				want = append(want, 12+4*v)
			}
			want = append(want, 96, 99)
			if diff := cmp.Diff(want, percents(got)); diff != "" {
				t.Errorf("percent changes (-want +got):\n%s", diff)
			}
			wantAt := []Position{{NodeID: "7", ClassType: "CLIPTextEncode", Title: "Negative"}}
			for v := 0; v <= 20; v++ {
				at := Position{NodeID: "3", ClassType: "KSampler", Title: "Main sampler"}
				if v > 0 {
					at.Value, at.Max = v, 20
				}
				wantAt = append(wantAt, at)
			}
			var gotAt []Position
			for _, c := range got {
				if c.At.NodeID == "7" || c.At.NodeID == "3" {
					if len(gotAt) == 0 || gotAt[len(gotAt)-1] != c.At {
						gotAt = append(gotAt, c.At)
					}
				}
			}
			if diff := cmp.Diff(wantAt, gotAt); diff != "" {
				t.Errorf("positions of the negative prompt and the sampler (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProgressStepsLearnedLate: when the prompt does not give the steps (a
// link), the sampler's steps are learned from its first report; the
// percentage goes on from where it was over the larger work, without going
// down or stalling.
func TestProgressStepsLearnedLate(t *testing.T) {
	t.Parallel()
	got := percents(runProgress(t, NewProgress(t2iPrompt(`["10", 0]`)), ksamplerRun(20, true)))
	// 3 of 6 units done when the sampler starts (50%); then 20 of its
	// units spread the other 50% over the 22 units left.
	want := []int{16, 33, 50}
	for v := 1; v <= 20; v++ {
		if pct := int(50 + 50*float64(v)/22); pct != want[len(want)-1] {
			want = append(want, pct)
		}
	}
	want = append(want, 97, 99)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("percent changes (-want +got):\n%s", diff)
	}
}

// TestProgressCustomSamplerSteps: a custom sampler counts the steps of the
// scheduler giving its sigmas.
func TestProgressCustomSamplerSteps(t *testing.T) {
	t.Parallel()
	prompt := json.RawMessage(`{
		"1": {"class_type": "BasicScheduler", "inputs": {"steps": 10, "scheduler": "normal", "denoise": 1}},
		"2": {"class_type": "SamplerCustomAdvanced", "inputs": {"sigmas": ["1", 0]}},
		"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}}
	}`)
	evs := []Event{
		{Type: EventExecuting, Node: "1"},
		{Type: EventExecuting, Node: "2"},
		{Type: EventProgress, Node: "2", Value: 5, Max: 10},
		{Type: EventExecuting, Node: "3"},
		{Type: EventExecutionSuccess},
	}
	// 12 units: 1 + 10 + 1.
	if got, want := percents(runProgress(t, NewProgress(prompt), evs)), []int{8, 50, 91, 99}; !cmp.Equal(got, want) {
		t.Errorf("percent changes = %v, want %v", got, want)
	}
}

func TestProgressNeverGoesDown(t *testing.T) {
	t.Parallel()
	p := NewProgress(json.RawMessage(`{"1": {"class_type": "A"}, "2": {"class_type": "B"}}`))
	evs := []Event{
		{Type: EventExecuting, Node: "1"},
		{Type: EventProgress, Node: "1", Value: 8, Max: 10},
		{Type: EventProgress, Node: "1", Value: 1, Max: 10}, // a second progress bar in the same node
		{Type: EventProgressState, NodeStates: map[string]NodeState{"1": {State: "running", Value: 0, Max: 1}}},
		{Type: EventProgress, Node: "1", Value: 5, Max: 0},  // bogus max
		{Type: EventProgress, Node: "1", Value: -3, Max: 4}, // bogus value, smaller max
		{Type: EventExecuting, Node: "2"},
		{Type: EventExecutionInterrupted, Node: "1"},
		{Type: EventExecuting, NodeNull: true},
	}
	// Node 1 is 10 units of 11: 8 steps are 72%, node 1 done 90%.
	if got, want := percents(runProgress(t, p, evs)), []int{72, 90}; !cmp.Equal(got, want) {
		t.Errorf("percent changes = %v, want %v", got, want)
	}
}

func TestProgressStaysBelow100WithUnknownNodes(t *testing.T) {
	t.Parallel()
	// Node expansion creates ids the prompt does not have ("5.0.0.3"); they
	// must not push the percentage past 99.
	p := NewProgress(json.RawMessage(`{"5": {"class_type": "Group"}}`))
	var evs []Event
	for i := range 5 {
		evs = append(evs, Event{Type: EventExecuting, Node: fmt.Sprintf("5.0.0.%d", i)})
	}
	runProgress(t, p, evs)
	if p.Percent() != 99 {
		t.Errorf("Percent() = %d, want 99", p.Percent())
	}
}

// TestProgressDisplayNode: a node ComfyUI expanded runs under the id of the
// prompt's node it came from (display_node).
func TestProgressDisplayNode(t *testing.T) {
	t.Parallel()
	p := NewProgress(json.RawMessage(`{"5": {"class_type": "Group", "_meta": {"title": "Upscale"}}, "6": {"class_type": "SaveImage"}}`))
	runProgress(t, p, []Event{
		{Type: EventExecuting, Node: "5.0.0.1", DisplayNode: "5"},
		{Type: EventExecuting, Node: "5.0.0.2", DisplayNode: "5"},
	})
	if want := (Position{NodeID: "5", ClassType: "Group", Title: "Upscale"}); p.Position() != want {
		t.Errorf("Position() = %+v, want %+v", p.Position(), want)
	}
	if p.Percent() != 0 {
		t.Errorf("Percent() = %d while the first node runs, want 0", p.Percent())
	}
}

func TestProgressUndecodablePrompt(t *testing.T) {
	t.Parallel()
	p := NewProgress(json.RawMessage(`[1`))
	runProgress(t, p, []Event{
		{Type: EventExecuting, Node: "1"},
		{Type: EventProgress, Node: "1", Value: 1, Max: 2},
		{Type: EventExecutionSuccess},
	})
	if want := (Position{NodeID: "1", Value: 1, Max: 2}); p.Position() != want || p.Percent() != 99 {
		t.Errorf("Position() = %+v, Percent() = %d; want %+v, 99", p.Position(), p.Percent(), want)
	}
}

func TestProgressBoundsUnknownNodes(t *testing.T) {
	t.Parallel()
	p := NewProgress(json.RawMessage(`{"1": {"class_type": "A"}}`))
	for i := range 3 * maxUnknownNodes {
		id := fmt.Sprintf("1.0.0.%d", i)
		p.Apply(Event{Type: EventExecuting, Node: id})
		p.Apply(Event{Type: EventProgress, Node: id, Value: 1, Max: 2})
	}
	if n := len(p.finished) + len(p.reported); n > 2+maxUnknownNodes {
		t.Errorf("tracks %d node states, want at most %d", n, 2+maxUnknownNodes)
	}
}
