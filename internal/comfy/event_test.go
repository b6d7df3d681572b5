package comfy

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	const pid = "3f25"
	tests := []struct {
		name  string
		frame string
		want  Event
	}{
		{
			name:  "first status with sid",
			frame: `{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}, "sid": "gw-a1"}}`,
			want:  Event{Type: EventStatus, SID: "gw-a1", QueueRemaining: 2},
		},
		{
			name:  "executing a node",
			frame: `{"type": "executing", "data": {"node": "2", "display_node": "2", "prompt_id": "3f25"}}`,
			want:  Event{Type: EventExecuting, PromptID: pid, Node: "2", DisplayNode: "2"},
		},
		{
			name:  "executing null ends the prompt",
			frame: `{"type": "executing", "data": {"node": null, "prompt_id": "3f25"}}`,
			want:  Event{Type: EventExecuting, PromptID: pid, NodeNull: true},
		},
		{
			name:  "executing replayed on reconnect has no prompt_id",
			frame: `{"type":"executing","data":{"node":"5"}}`,
			want:  Event{Type: EventExecuting, Node: "5"},
		},
		{
			name:  "progress",
			frame: `{"type": "progress", "data": {"value": 3, "max": 20, "prompt_id": "3f25", "node": "5"}}`,
			want:  Event{Type: EventProgress, PromptID: pid, Node: "5", Value: 3, Max: 20},
		},
		{
			name:  "progress with float values",
			frame: `{"type": "progress", "data": {"value": 3.7, "max": 20.0, "prompt_id": "3f25", "node": "5"}}`,
			want:  Event{Type: EventProgress, PromptID: pid, Node: "5", Value: 3, Max: 20},
		},
		{
			name:  "execution_cached",
			frame: `{"type": "execution_cached", "data": {"nodes": ["1", "2"], "prompt_id": "3f25", "timestamp": 1}}`,
			want:  Event{Type: EventExecutionCached, PromptID: pid, Nodes: []string{"1", "2"}},
		},
		{
			name: "progress_state",
			frame: `{"type": "progress_state", "data": {"prompt_id": "3f25", "nodes": {
				"1": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "1", "parent_node_id": null},
				"2": {"value": 1, "max": 2, "state": "running", "node_id": "2"}}}}`,
			want: Event{Type: EventProgressState, PromptID: pid, NodeStates: map[string]NodeState{
				"1": {State: "finished", Value: 1, Max: 1},
				"2": {State: "running", Value: 1, Max: 2},
			}},
		},
		{
			name:  "executed",
			frame: `{"type": "executed", "data": {"node": "4", "display_node": "4", "output": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}, "prompt_id": "3f25"}}`,
			want: Event{Type: EventExecuted, PromptID: pid, Node: "4", DisplayNode: "4", Output: NodeOutput{
				"images": json.RawMessage(`[{"filename": "a.png", "subfolder": "", "type": "output"}]`),
			}},
		},
		{
			name:  "execution_interrupted names the node in node_id",
			frame: `{"type": "execution_interrupted", "data": {"prompt_id": "3f25", "node_id": "12", "node_type": "ImageBlur", "executed": ["1"], "timestamp": 5}}`,
			want:  Event{Type: EventExecutionInterrupted, PromptID: pid, Node: "12"},
		},
		{
			name:  "unknown type and fields",
			frame: `{"type": "logs", "data": {"entries": [{"t": 1, "m": "x"}], "size": {"cols": 80}}, "extra": true}`,
			want:  Event{Type: "logs"},
		},
		{
			name:  "ill-typed fields are left zero",
			frame: `{"type": "progress", "data": {"node": 5, "prompt_id": ["x"], "value": "3", "max": 1e300, "nodes": [1, 2], "status": 7, "output": []}}`,
			want:  Event{Type: EventProgress},
		},
		{
			name:  "data not an object",
			frame: `{"type": "x", "data": [1, 2]}`,
			want:  Event{Type: "x"},
		},
		{
			name:  "no data",
			frame: `{"type": "x"}`,
			want:  Event{Type: "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeEvent([]byte(tt.frame))
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Event{}, "Data"), rawJSONEqual(t)); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

// rawJSONEqual compares json.RawMessage values by meaning, not bytes. A
// []byte field is assignable, so cmp uses it there too: nil stays nil.
func rawJSONEqual(t *testing.T) cmp.Option {
	return cmp.Comparer(func(a, b json.RawMessage) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return jsonEqual(t, a, b)
	})
}

func TestDecodeEventKeepsData(t *testing.T) {
	t.Parallel()
	frame := `{"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 104857600}}`
	ev, err := DecodeEvent([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != EventFeatureFlags || !jsonEqual(t, ev.Data, []byte(`{"supports_preview_metadata": true, "max_upload_size": 104857600}`)) {
		t.Errorf("got %+v", ev)
	}
}

func TestDecodeEventMalformed(t *testing.T) {
	t.Parallel()
	for _, frame := range []string{``, `null`, `[]`, `"status"`, `{"data": {}}`, `{"type": ""}`, `{"type": 3}`, `{"type": "x"`, `not json`} {
		if _, err := DecodeEvent([]byte(frame)); !errors.Is(err, ErrMalformedFrame) {
			t.Errorf("DecodeEvent(%q): got %v, want ErrMalformedFrame", frame, err)
		}
	}
}

func TestDecodeBinary(t *testing.T) {
	t.Parallel()
	meta := `{"node_id": "2", "prompt_id": "924f", "display_node_id": "2", "image_type": "image/png"}`
	type4 := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 4), uint32(len(meta)))
	type4 = append(append(type4, meta...), "\x89PNG"...)
	jpeg4 := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 4), 27)
	jpeg4 = append(append(jpeg4, `{"image_type":"image/jpeg"}`...), "\xff\xd8"...)
	text := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 3), 2)
	text = append(text, "17hello"...)
	png := []byte("\x89PNG")
	tests := []struct {
		name string
		in   []byte
		want Event
	}{
		{"legacy PNG", []byte("\x00\x00\x00\x01\x00\x00\x00\x02\x89PNG"), Event{Type: EventBinary, BinaryType: 1, Image: png, ImageFormat: "png", ImageSize: 4}},
		{"legacy JPEG", []byte("\x00\x00\x00\x01\x00\x00\x00\x01\xff\xd8"), Event{Type: EventBinary, BinaryType: 1, Image: []byte("\xff\xd8"), ImageFormat: "jpeg", ImageSize: 2}},
		{"legacy unknown format", []byte("\x00\x00\x00\x01\x00\x00\x00\x07xy"), Event{Type: EventBinary, BinaryType: 1, Image: []byte("xy"), ImageSize: 2}},
		{"legacy without image", []byte("\x00\x00\x00\x01\x00\x00\x00\x02"), Event{Type: EventBinary, BinaryType: 1, Image: []byte{}, ImageFormat: "png"}},
		{"preview with metadata", type4, Event{
			Type: EventBinary, BinaryType: 4, PromptID: "924f", Node: "2", DisplayNode: "2", Data: json.RawMessage(meta),
			Image: png, ImageFormat: "png", ImageSize: 4,
		}},
		{"JPEG with metadata", jpeg4, Event{
			Type: EventBinary, BinaryType: 4, Data: json.RawMessage(`{"image_type":"image/jpeg"}`),
			Image: []byte("\xff\xd8"), ImageFormat: "jpeg", ImageSize: 2,
		}},
		{"text", text, Event{Type: EventBinary, BinaryType: 3, Node: "17"}},
		{"type only", []byte{0, 0, 0, 9}, Event{Type: EventBinary, BinaryType: 9}},
		{"metadata longer than frame", []byte("\x00\x00\x00\x04\xff\xff\xff\xff{}"), Event{Type: EventBinary, BinaryType: 4}},
		{"metadata not JSON", []byte("\x00\x00\x00\x04\x00\x00\x00\x02{x"), Event{Type: EventBinary, BinaryType: 4, Image: []byte{}}},
	}
	for _, tt := range tests {
		got, err := decodeBinary(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, err := decodeBinary([]byte{0, 0, 1}); !errors.Is(err, ErrMalformedFrame) {
		t.Errorf("3-byte frame: got %v, want ErrMalformedFrame", err)
	}
}

// FuzzDecodeEvent feeds arbitrary frames to both decoders, the text one
// checked against encoding/json's reading (decodeEventStd); seeds are every
// frame recorded from ComfyUI v0.3.65.
func FuzzDecodeEvent(f *testing.F) {
	for _, sc := range []string{"s02_basic_workflow", "s02b_ws_binary_frames", "s04_invalid_prompts", "s05_interrupt_and_queue_delete"} {
		for _, fr := range loadFrames(f, sc, "") {
			_, b := fr.payload(f)
			f.Add(b[:min(len(b), 512)])
		}
	}
	f.Add([]byte(`{"type":"executing","data":{"node":null}}`))
	f.Add([]byte(`{"type":"x","type":null,"data":{"status":{"exec_info":{"queue_remaining":3},"exec_info":{}}}}`))
	f.Add([]byte("{\"type\":\"x\",\"data\":{\"nodes\":{\"\xff\":{\"state\":1}}}}"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		sameDecode(t, frame)
		ev, err := DecodeEvent(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("error %v does not wrap ErrMalformedFrame", err)
			}
		} else if ev.Type == "" {
			t.Fatalf("decoded an event without a type from %q", frame)
		}
		if ev.NodeNull && ev.Node != "" {
			t.Fatalf("NodeNull with Node %q", ev.Node)
		}
		bev, err := decodeBinary(frame)
		if err == nil && bev.Type != EventBinary {
			t.Fatalf("binary decode gave type %q", bev.Type)
		}
	})
}

// BenchmarkDecodeEvent decodes the text frames of a real run, as the
// driver's read loop does for every frame of every prompt.
func BenchmarkDecodeEvent(b *testing.B) {
	var texts [][]byte
	for _, f := range loadFrames(b, "s02_basic_workflow", "") {
		if f.Frame == "text" {
			texts = append(texts, f.JSON)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := DecodeEvent(texts[i%len(texts)]); err != nil {
			b.Fatal(err)
		}
	}
}
