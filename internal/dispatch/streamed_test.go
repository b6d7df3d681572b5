package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// wsTask has a sampler (3) and a SaveImageWebsocket node (9).
func wsTask() *task.Task {
	return &task.Task{ID: "t1", Owner: "alice", Workflow: json.RawMessage(`{
		"3": {"class_type": "KSampler", "inputs": {}},
		"9": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["8", 0]}}}`)}
}

func executing(node string) comfy.Event {
	return comfy.Event{Type: comfy.EventExecuting, PromptID: "t1", Node: node, NodeNull: node == ""}
}

func image(node, format string, data string) comfy.Event {
	return comfy.Event{
		Type: comfy.EventBinary, BinaryType: comfy.BinaryPreviewImage, PromptID: "t1", Node: node,
		Image: []byte(data), ImageFormat: format, ImageSize: len(data),
	}
}

// feed hands events to s as the driver's read loop does and returns those
// that went on to the run.
func feed(s *streamed, evs ...comfy.Event) []comfy.Event {
	var passed []comfy.Event
	for _, ev := range evs {
		if !s.take(ev) {
			passed = append(passed, ev)
		}
	}
	return passed
}

// TestStreamedKeepsOutputs: frames during a SaveImageWebsocket node are
// its outputs, in order; frames of other nodes are previews; no binary
// frame goes on to the run's event queue.
func TestStreamedKeepsOutputs(t *testing.T) {
	t.Parallel()
	relay := newPreviewRelay(nil, slog.New(slog.DiscardHandler))
	s := newStreamed(wsTask(), false, relay)
	passed := feed(s,
		executing("3"), image("3", "jpeg", "preview1"), image("3", "jpeg", "preview2"),
		executing("9"), image("9", "png", "first"), image("9", "png", "second"),
		executing(""),
	)
	if len(passed) != 3 || slices.ContainsFunc(passed, func(ev comfy.Event) bool { return ev.Type == comfy.EventBinary }) {
		t.Errorf("passed on to the run: %+v, want the three executing messages only", passed)
	}
	nodes, images, terr := s.result()
	if terr != nil {
		t.Fatalf("result: %v", terr)
	}
	want := map[string][]streamedImage{"9": {{"png", []byte("first")}, {"png", []byte("second")}}}
	if !slices.Equal(nodes, []string{"9"}) || !cmp.Equal(want, images, cmp.AllowUnexported(streamedImage{})) {
		t.Errorf("got nodes %v, images %v; want [9] and %v", nodes, images, want)
	}
}

// TestStreamedLost: a dropped connection loses the images of a
// SaveImageWebsocket node that had not finished; one that had finished, or
// a workflow without such a node, loses nothing.
func TestStreamedLost(t *testing.T) {
	t.Parallel()
	plain := &task.Task{ID: "t1", Workflow: json.RawMessage(`{"9": {"class_type": "SaveImage", "inputs": {}}}`)}
	tests := []struct {
		name     string
		task     *task.Task
		reattach bool
		before   []comfy.Event // events before the connection drops (nil: it never drops)
		drops    bool
		wantLost bool
	}{
		{"no drop", wsTask(), false, []comfy.Event{executing("9"), image("9", "png", "a")}, false, false},
		{"drop before the node ran", wsTask(), false, []comfy.Event{executing("3")}, true, true},
		{"drop while the node runs", wsTask(), false, []comfy.Event{executing("9"), image("9", "png", "a")}, true, true},
		{"drop after the node finished", wsTask(), false, []comfy.Event{executing("9"), image("9", "png", "a"), executing("3")}, true, false},
		{"drop after execution_success", wsTask(), false, []comfy.Event{executing("9"), {Type: comfy.EventExecutionSuccess, PromptID: "t1"}}, true, false},
		{"reattached after a restart", wsTask(), true, nil, false, true},
		{"no SaveImageWebsocket node", plain, false, nil, true, false},
		{"reattached, no SaveImageWebsocket node", plain, true, nil, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStreamed(tt.task, tt.reattach, nil)
			feed(s, tt.before...)
			if tt.drops {
				s.disconnected()
			}
			_, images, terr := s.result()
			if lost := terr != nil && terr.Type == task.ErrorTypeOutputLost; lost != tt.wantLost {
				t.Errorf("got error %v, want output_lost %v", terr, tt.wantLost)
			}
			if tt.wantLost && images != nil {
				t.Errorf("a lost run still returns images %v", images)
			}
		})
	}
}

// TestStreamedLimit: past the per-run limit, or with an image the
// connection did not keep, the task fails with output_failed naming the node.
func TestStreamedLimit(t *testing.T) {
	t.Parallel()
	s := newStreamed(wsTask(), false, nil)
	s.limit = 10
	feed(s, executing("9"), image("9", "png", "12345"), image("9", "png", "123456"))
	if _, _, terr := s.result(); terr == nil || terr.Type != task.ErrorTypeOutput || terr.NodeID != "9" {
		t.Errorf("over the limit: got %v, want output_failed at node 9", terr)
	}

	s = newStreamed(wsTask(), false, nil)
	big := image("9", "png", "")
	big.Image, big.ImageSize = nil, comfy.MaxImage+1
	feed(s, executing("9"), big)
	if _, _, terr := s.result(); terr == nil || terr.Type != task.ErrorTypeOutput {
		t.Errorf("image not kept by the connection: got %v, want output_failed", terr)
	}
}

// recorder is an event.Publisher that records what is published.
type recorder struct {
	// mu guards events.
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Publish(_ context.Context, evs ...event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, evs...)
	return nil
}

func (r *recorder) Subscribe(context.Context) (store.Subscription, error) {
	return nil, errors.New("recorder: no subscriptions")
}

func (r *recorder) published() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// TestPreviewRelay: at most one task_preview per task per interval, the
// latest one, with the image base64-encoded for the task's owner;
// oversized and non-image previews are skipped.
func TestPreviewRelay(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ps := &recorder{}
		relay := newPreviewRelay(ps, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { relay.run(ctx) })
		defer wg.Wait()
		defer cancel()

		// 50 previews in 2.5 s, 20 per second.
		for i := range 50 {
			relay.offer("t1", "alice", image("3", "jpeg", string(rune('a'+i%26))))
			time.Sleep(50 * time.Millisecond)
		}
		relay.offer("t1", "alice", image("3", "jpeg", "last"))
		relay.offer("t1", "alice", image("3", "webp", "not sent"))
		relay.offer("t1", "alice", image("3", "png", string(make([]byte, maxPreviewBytes+1))))
		time.Sleep(time.Second)
		synctest.Wait()

		got := ps.published()
		if len(got) < 5 || len(got) > 7 {
			t.Errorf("published %d previews for 3.5 s, want one per 500 ms", len(got))
		}
		for i, ev := range got {
			if ev.Type != event.TypeTaskPreview || ev.TaskID != "t1" || ev.Owner != "alice" {
				t.Errorf("event %d: %+v", i, ev)
			}
			if i > 0 && ev.Time-got[i-1].Time < previewInterval.Milliseconds() {
				t.Errorf("event %d came %d ms after the previous, want >= %v", i, ev.Time-got[i-1].Time, previewInterval)
			}
		}
		var last struct{ TaskID, NodeID, Format, Image string }
		if err := json.Unmarshal(got[len(got)-1].Data, &last); err != nil {
			t.Fatal(err)
		}
		want := struct{ TaskID, NodeID, Format, Image string }{"t1", "3", "jpeg", "bGFzdA=="} // base64("last")
		if last != want {
			t.Errorf("last preview = %+v, want %+v (the latest wins)", last, want)
		}
		relay.mu.Lock()
		defer relay.mu.Unlock()
		if len(relay.pending) != 0 || len(relay.sent) > 1 {
			t.Errorf("relay holds %d pending and %d sent entries, want none and at most t1's", len(relay.pending), len(relay.sent))
		}
	})
}
