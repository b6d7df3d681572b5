package workflow

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const t2i = `{
 "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
 "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "Positive"}, "inputs": {"text": "a cat", "clip": ["4", 1]}},
 "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"}, "inputs": {"text": "", "clip": ["4", 1]}},
 "8": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"}, "inputs": {"text": "", "clip": ["4", 1]}},
 "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}, "is_changed": ["x"]},
 "10": {"class_type": "LoadImage", "inputs": {"image": "in.png"}}
}`

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, field, contains string
	}{
		{"empty", ``, "workflow", "required"},
		{"null", `null`, "workflow", "required"},
		{"array", `[1,2]`, "workflow", "JSON object"},
		{"no nodes", `{}`, "workflow", "no nodes"},
		{"ui format", `{"nodes":[{"id":1}],"links":[]}`, "workflow", "Save (API Format)"},
		{"node not object", `{"1": 5}`, "workflow.1", "object"},
		{"missing class_type", `{"1": {"inputs": {}}}`, "workflow.1.class_type", "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(json.RawMessage(tt.in))
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("Parse(%s) error = %v, want *Error", tt.in, err)
			}
			if we.Field != tt.field || !strings.Contains(we.Message, tt.contains) {
				t.Errorf("Parse(%s) = %q / %q, want field %q containing %q", tt.in, we.Field, we.Message, tt.field, tt.contains)
			}
		})
	}
}

func TestResolveAndApply(t *testing.T) {
	t.Parallel()
	p, err := Parse(json.RawMessage(t2i))
	if err != nil {
		t.Fatal(err)
	}
	params := map[string]json.RawMessage{
		"3.seed":        json.RawMessage(`42`),
		"Positive.text": json.RawMessage(`"a lighthouse"`),
		"10.image":      json.RawMessage(`{"fileId":"f-1"}`),
		"4.ckpt_name":   json.RawMessage(`"dreamshaper_8.safetensors"`),
		"3.new_input":   json.RawMessage(`true`),
	}
	resolved, err := p.ResolveParams(params)
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	out, err := p.Apply(resolved, func(f FileRef) (string, error) {
		asked = append(asked, f.FileID)
		return "comfyfleet/t/in (1).png", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	inputs := func(id string) map[string]any { return got[id]["inputs"].(map[string]any) }
	if inputs("3")["seed"] != float64(42) || inputs("3")["new_input"] != true || inputs("3")["steps"] != float64(20) {
		t.Errorf("node 3 inputs = %v", inputs("3"))
	}
	if inputs("6")["text"] != "a lighthouse" {
		t.Errorf("title param not applied: %v", inputs("6"))
	}
	if inputs("10")["image"] != "comfyfleet/t/in (1).png" || len(asked) != 1 || asked[0] != "f-1" {
		t.Errorf("file param: image=%v asked=%v", inputs("10")["image"], asked)
	}
	if got["3"]["is_changed"] == nil || got["6"]["_meta"] == nil {
		t.Errorf("fields other than inputs were dropped: %v", got["3"])
	}
	// The original prompt is untouched.
	if string(p["3"].Inputs["seed"]) != "1" {
		t.Errorf("Apply changed the parsed prompt: seed = %s", p["3"].Inputs["seed"])
	}
	applied, _ := Parse(out)
	if cps := applied.Checkpoints(); len(cps) != 1 || cps[0] != "dreamshaper_8.safetensors" {
		t.Errorf("Checkpoints = %v", cps)
	}
}

func TestResolveParamsErrors(t *testing.T) {
	t.Parallel()
	p, err := Parse(json.RawMessage(t2i))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ key, contains string }{
		{"99.seed", "no node"},
		{"Nope.text", "no node"},
		{"Prompt.text", "ambiguous"},
		{"seed", `"<nodeId>.<inputName>"`},
		{"3.", `"<nodeId>.<inputName>"`},
		{".seed", `"<nodeId>.<inputName>"`},
	}
	for _, tt := range tests {
		_, err := p.ResolveParams(map[string]json.RawMessage{tt.key: json.RawMessage(`1`)})
		var we *Error
		if !errors.As(err, &we) || we.Field != "params."+tt.key || !strings.Contains(we.Message, tt.contains) {
			t.Errorf("key %q: error = %v, want field params.%s containing %q", tt.key, err, tt.key, tt.contains)
		}
	}
	_, err = p.ResolveParams(map[string]json.RawMessage{"10.image": json.RawMessage(`{"fileId":""}`)})
	if err == nil {
		t.Error("empty fileId accepted")
	}
}

// FuzzParseAndApply checks that no workflow or params input panics and that
// an accepted pair always applies to valid JSON that parses again.
func FuzzParseAndApply(f *testing.F) {
	f.Add([]byte(t2i), []byte(`{"3.seed": 5, "Positive.text": "x"}`))
	f.Add([]byte(`{"nodes":[]}`), []byte(`{}`))
	f.Add([]byte(`{"a.b": {"class_type": "X", "inputs": {}}}`), []byte(`{"a.b.c": {"fileId": "z"}}`))
	f.Fuzz(func(t *testing.T, wf, params []byte) {
		p, err := Parse(wf)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(params, &m) != nil {
			return
		}
		resolved, err := p.ResolveParams(m)
		if err != nil {
			return
		}
		out, err := p.Apply(resolved, func(FileRef) (string, error) { return "f.png", nil })
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("applied prompt does not parse: %v\n%s", err, out)
		}
	})
}
