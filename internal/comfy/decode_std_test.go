package comfy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// decodeEventStd is DecodeEvent as it was written with encoding/json
// alone, kept as the reference the scanner must agree with.
func decodeEventStd(frame []byte) (Event, error) {
	var w struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(frame, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformedFrame, err)
	}
	if w.Type == "" {
		return Event{}, fmt.Errorf("%w: no type", ErrMalformedFrame)
	}
	ev := Event{Type: w.Type, Data: w.Data}
	var f struct {
		PromptID    json.RawMessage `json:"prompt_id"`
		DisplayNode json.RawMessage `json:"display_node"`
		SID         json.RawMessage `json:"sid"`
		Node        json.RawMessage `json:"node"`
		NodeID      json.RawMessage `json:"node_id"`
		Value       json.RawMessage `json:"value"`
		Max         json.RawMessage `json:"max"`
		Status      json.RawMessage `json:"status"`
		Nodes       json.RawMessage `json:"nodes"`
		Output      json.RawMessage `json:"output"`
	}
	if json.Unmarshal(w.Data, &f) != nil {
		return ev, nil
	}
	ev.PromptID = jsonString(f.PromptID)
	ev.DisplayNode = jsonString(f.DisplayNode)
	ev.SID = jsonString(f.SID)
	if f.Node != nil {
		ev.NodeNull = bytes.Equal(bytes.TrimSpace(f.Node), []byte("null"))
		ev.Node = jsonString(f.Node)
	} else {
		ev.Node = jsonString(f.NodeID)
	}
	ev.Value = jsonInt(f.Value)
	ev.Max = jsonInt(f.Max)
	if len(f.Status) > 0 {
		var s struct {
			ExecInfo struct {
				QueueRemaining flexInt `json:"queue_remaining"`
			} `json:"exec_info"`
		}
		_ = json.Unmarshal(f.Status, &s)
		ev.QueueRemaining = int(s.ExecInfo.QueueRemaining)
	}
	fillNodesStd(&ev, f.Nodes)
	if len(f.Output) > 0 {
		_ = json.Unmarshal(f.Output, &ev.Output)
	}
	return ev, nil
}

func fillNodesStd(ev *Event, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	if json.Unmarshal(raw, &ev.Nodes) == nil {
		return
	}
	ev.Nodes = nil
	var states map[string]json.RawMessage
	if json.Unmarshal(raw, &states) != nil {
		return
	}
	ev.NodeStates = make(map[string]NodeState, len(states))
	for id, s := range states {
		var ns NodeState
		_ = json.Unmarshal(s, &ns) // an ill-typed field leaves the rest decoded
		ev.NodeStates[id] = ns
	}
}

// sameDecode fails t when DecodeEvent and decodeEventStd disagree on frame.
func sameDecode(t *testing.T, frame []byte) {
	t.Helper()
	got, gerr := DecodeEvent(frame)
	want, werr := decodeEventStd(frame)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("frame %q: error %v, the reference's %v", frame, gerr, werr)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("frame %q (-reference +scanner):\n%s", frame, diff)
	}
}

// TestDecodeEventMatchesEncodingJSON: every text frame recorded from
// ComfyUI v0.3.65, and frames shaped to trip a scanner, decode as
// encoding/json decodes them.
func TestDecodeEventMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	n := 0
	for _, sc := range []string{"s02_basic_workflow", "s02b_ws_binary_frames", "s04_invalid_prompts", "s05_interrupt_and_queue_delete"} {
		for _, fr := range loadFrames(t, sc, "") {
			if fr.Frame == "text" {
				sameDecode(t, fr.JSON)
				n++
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d recorded text frames", n)
	}
	for _, frame := range []string{
		`{"type":"executing","data":{"node":null,"prompt_id":"p"}}`,
		` { "type" : "status" , "data" : { "status" : { "exec_info" : { "queue_remaining" : 2.9 } } } } `,
		`{"TYPE":"x","Data":{"Prompt_ID":"p","NODE":"5"}}`,
		`{"type":"x","type":"y","data":{"node":"1","node":null}}`,
		`{"type":7,"type":"y"}`,
		`{"type":"y","type":7}`,
		`{"type":null}`,
		`{"type":"","data":{}}`,
		`{"typ\u0065":"e\u0301","data":{"prompt_\u0069d":"a\"b}","value":"3","max":1e3}}`,
		`{"type":"x","data":[1,2,{"node":"1"}]}`,
		`{"type":"x","data":null}`,
		`{"type":"x","data":"{\"node\":\"1\"}"}`,
		`{"type":"x","data":{"status":{"exec_info":null}}}`,
		`{"type":"x","data":{"status":{"exec_info":{"queue_remaining":null}}}}`,
		`{"type":"x","data":{"status":[{"exec_info":{"queue_remaining":3}}]}}`,
		`{"type":"x","data":{"nodes":{"1":{"state":"running","value":1,"max":2}},"output":{"images":[]}}}`,
		`{"type":"x","data":{"nodes":{"1":{"STATE":"a","state":7,"value":1,"value":"x","value":null,"max":1e999},"1":{"max":-0.5e1},"\u0032":null,"3":[]}}}`,
		`{"type":"x","data":{"nodes":["1","2"]}}`,
		`{"type":"x","data":{"nodes":["1",2]}}`,
		`{"type":"x","data":{"nodes":{}}}`,
		`{"type":"x","data":{"nodes":"1"}}`,
		`{"type":"\u212a"}`,
		"{\"type\":\"\xff\"}",
		"{\"type\":\"x\",\"data\":{\"prompt_id\":\"\xff\"}}",
		`{"type":"x","type":null}`,
		`{"type":"x","data":{"status":{"exec_info":{"queue_remaining":3},"exec_info":{}}}}`,
		`{"type":"x","data":{"status":{"exec_info":{"queue_remaining":3},"exec_info":null}}}`,
		`{"type":"x","data":{"status":{"exec_info":{"queue_remaining":3},"exec_info":{"queue_remaining":null}}}}`,
		`{"type":"x","data":{"status":{"exec_info":{"queue_remaining":3},"exec_info":7}}}`,
		"{\"type\":\"x\",\"data\":{\"nodes\":{\"\xff\":{\"state\":\"\xfe\"}}}}",
		`{"type":"x","data":{"prompt_id":"a","prompt_id":null}}`,
		`[{"type":"x"}]`,
		`null`, `"x"`, `{}`, `{`, ``,
	} {
		sameDecode(t, []byte(frame))
	}
}
