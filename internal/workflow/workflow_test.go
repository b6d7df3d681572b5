package workflow

import (
	"encoding/json"
	"errors"
	"path"
	"strings"
	"testing"
	"unicode"
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

// FuzzParseAndApply checks that no workflow or params input panics, that
// errors are *Error, and that an accepted pair always applies to valid JSON
// that parses again, with every filename_prefix under the output folder.
func FuzzParseAndApply(f *testing.F) {
	f.Add([]byte(t2i), []byte(`{"3.seed": 5, "Positive.text": "x"}`))
	f.Add([]byte(`{"nodes":[]}`), []byte(`{}`))
	f.Add([]byte(`{"a.b": {"class_type": "X", "inputs": {}}}`), []byte(`{"a.b.c": {"fileId": "z"}}`))
	f.Add([]byte(`{"9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "a/../../b"}}}`),
		[]byte(`{"9.filename_prefix": "..\\..\\input\\x"}`))
	f.Fuzz(func(t *testing.T, wf, params []byte) {
		ctx := t.Context()
		p, err := ParseContext(ctx, wf, Limits{MaxNodes: 1000})
		if err != nil {
			wantWorkflowError(t, err)
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(params, &m) != nil {
			return
		}
		resolved, err := p.ResolveParamsContext(ctx, m)
		if err != nil {
			wantWorkflowError(t, err)
			return
		}
		if err := p.CheckFileReferences(ctx, resolved); err != nil && !errors.Is(err, ErrFileReference) {
			t.Fatalf("CheckFileReferences: %v, want an ErrFileReference", err)
		}
		const dir = "comfyfleet/0123abcd"
		out, err := p.ApplyWith(resolved, ApplyOptions{
			FileName:  func(FileRef) (string, error) { return "f.png", nil },
			OutputDir: dir,
		})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		applied, err := Parse(out)
		if err != nil {
			t.Fatalf("applied prompt does not parse: %v\n%s", err, out)
		}
		if len(applied) != len(p) {
			t.Fatalf("applied prompt has %d nodes, want %d", len(applied), len(p))
		}
		for id, n := range applied {
			if raw, ok := n.Inputs[prefixInput]; ok {
				var prefix string
				if json.Unmarshal(raw, &prefix) != nil || !underDir(dir, prefix) {
					t.Fatalf("node %s writes to %s, outside %s", id, raw, dir)
				}
			}
		}
	})
}

// wantWorkflowError fails unless err is an *Error.
func wantWorkflowError(t *testing.T, err error) {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) || we.Field == "" {
		t.Fatalf("error %v is not an *Error naming a field", err)
	}
}

// underDir reports whether ComfyUI would write outputs with prefix p under
// dir: p is dir, "/", then plain path segments.
func underDir(dir, p string) bool {
	rest, ok := strings.CutPrefix(p, dir+"/")
	if !ok || rest == "" || strings.ContainsRune(rest, '\\') {
		return false
	}
	for _, seg := range strings.Split(rest, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, ":*?\"<>|") ||
			strings.IndexFunc(seg, unicode.IsControl) >= 0 {
			return false
		}
	}
	return path.Clean(p) == p
}

// FuzzOutputPrefix: whatever prefix a task gives, its outputs stay under
// the task's folder.
func FuzzOutputPrefix(f *testing.F) {
	for _, s := range []string{"ComfyUI", "a/b", "../../x", "/abs", `C:\x`, "a\x00b", " .. / . /x ", "%year%/%date:yyyy%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, given string) {
		raw, _ := json.Marshal(given)
		const dir = "comfyfleet/0123abcd"
		if got := OutputPrefix(dir, raw); !underDir(dir, got) {
			t.Fatalf("OutputPrefix(%q) = %q, outside %s", given, got, dir)
		}
	})
}

// FuzzFileReference: a value CheckFileReferences lets a user give
// LoadImage names a file at the root of ComfyUI's input folder, by
// ComfyUI's own rules (folder_paths.annotated_filepath, then a join).
func FuzzFileReference(f *testing.F) {
	for _, s := range []string{"in.png", "x.png [output]", "x.png[temp]", "a/b.png", `a\b.png`, "../x", "C:x", " [input] ", "..", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		wf, _ := json.Marshal(map[string]any{"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": value}}})
		p, err := Parse(wf)
		if err != nil {
			t.Fatal(err)
		}
		if p.CheckFileReferences(t.Context(), nil) != nil {
			return
		}
		for _, a := range []string{"[output]", "[input]", "[temp]"} {
			if strings.HasSuffix(value, a) {
				t.Fatalf("%q was accepted: ComfyUI reads it from the %s folder", value, a)
			}
		}
		if strings.ContainsAny(value, `/\:`) {
			t.Fatalf("%q was accepted: ComfyUI reads it from a subfolder, a path or a drive", value)
		}
		if joined := path.Join("/input", value); path.Dir(joined) != "/input" && joined != "/input" {
			t.Fatalf("%q was accepted: it resolves to %s, outside the input folder's root", value, joined)
		}
	})
}
