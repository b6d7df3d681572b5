package workflow

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestCheckFileReferences: the ways a task could read a file of another
// task through a shared instance are refused, naming the input; plain
// names, model subfolders, links and the gateway's own file params pass.
func TestCheckFileReferences(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, class, input, value string
		refused                   bool
	}{
		{"another task's output", "LoadImage", "image", `"ComfyUI_00001_.png [output]"`, true},
		{"output without the space", "LoadImage", "image", `"ComfyUI_00001_.pngX[output]"`, true},
		{"temp", "LoadImageMask", "image", `"ComfyUI_temp_abcde_00001_.png [temp]"`, true},
		{"input annotation", "LoadImage", "image", `"x.png [input]"`, true},
		{"annotation, other case and spaces", "LoadImage", "image", `"x.png [Output]  "`, true},
		{"annotation in any input", "SomeCustomNode", "anything", `"x.png [output]"`, true},
		{"annotation in a list", "SomeCustomNode", "files", `{"__value__": ["a.png", "b.png [temp]"]}`, true},
		{"another task's upload", "LoadImage", "image", `"comfyfleet/0f3c2a1e-0000-4000-8000-000000000001/in.png"`, true},
		{"backslash subfolder", "LoadImage", "image", `"comfyfleet\\abc\\in.png"`, true},
		{"absolute path", "LoadImage", "image", `"/etc/passwd"`, true},
		{"dot dot", "LoadImage", "image", `"../output/ComfyUI_00001_.png"`, true},
		{"dot dot in any input", "CheckpointLoaderSimple", "ckpt_name", `"../../secret.safetensors"`, true},
		{"dot dot in a text", "CLIPTextEncode", "text", `"x/../y"`, true},
		{"file URL", "SomeCustomNode", "source", `"file:///etc/passwd"`, true},
		{"video loader", "LoadVideo", "file", `"sub/clip.mp4"`, true},
		{"audio loader", "LoadAudio", "audio", `"sub/a.wav"`, true},
		{"custom loader path", "VHS_LoadImagesPath", "directory", `"output/comfyfleet"`, true},
		{"custom path input", "Image Load", "image_path", `"/srv/comfyui/output/x.png"`, true},
		{"loader's other string input", "LoadLatent", "latent", `"sub/x.latent"`, true},
		{"drive", "LoadImage", "image", `"C:x.png"`, true},
		{"asset hash", "LoadImage", "image", `"blake3:0123abcd"`, true},
		{"URL to a loader", "LoadImageFromUrl", "url", `"http://127.0.0.1:8188/view?filename=x.png"`, true},

		{"plain name", "LoadImage", "image", `"example.png"`, false},
		{"plain name with spaces", "LoadImage", "image", `"in put (1).png"`, false},
		{"model in a subfolder", "CheckpointLoaderSimple", "ckpt_name", `"sdxl/base.safetensors"`, false},
		{"numbered model input", "DualCLIPLoader", "clip_name2", `"t5/t5xxl_fp16.safetensors"`, false},
		{"lora in a subfolder", "LoraLoader", "lora_name", `"styles\\ink.safetensors"`, false},
		{"link into a loader", "LoraLoader", "model", `["57:35", 0]`, false},
		{"text with a slash", "CLIPTextEncode", "text", `"a cat/dog hybrid, 50/50"`, false},
		{"text with dots", "CLIPTextEncode", "text", `"wait... what.."`, false},
		{"prefix with subfolders", "SaveImage", "filename_prefix", `"renders/cats"`, false},
		{"prefix climbing out (moved by the gateway)", "SaveImage", "filename_prefix", `"../../input/x [output]"`, false},
		{"number", "LoadImage", "image", `5`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wf := `{"10": {"class_type": ` + quote(tt.class) + `, "inputs": {` + quote(tt.input) + `: ` + tt.value + `}}}`
			p, err := Parse(json.RawMessage(wf))
			if err != nil {
				t.Fatal(err)
			}
			err = p.CheckFileReferences(t.Context(), nil)
			if !tt.refused {
				if err != nil {
					t.Fatalf("%s.%s = %s refused: %v", tt.class, tt.input, tt.value, err)
				}
				return
			}
			var we *Error
			if !errors.Is(err, ErrFileReference) || !errors.As(err, &we) {
				t.Fatalf("%s.%s = %s: error = %v, want an *Error matching ErrFileReference", tt.class, tt.input, tt.value, err)
			}
			if want := "workflow.10.inputs." + tt.input; we.Field != want {
				t.Errorf("field = %q, want %q", we.Field, want)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestCheckFileReferencesParams: a value set by params is checked and named
// by its key; an input a param replaces is not checked for its old value;
// file params, which the gateway fills, are not checked.
func TestCheckFileReferencesParams(t *testing.T) {
	t.Parallel()
	p, err := Parse(json.RawMessage(`{
		"10": {"class_type": "LoadImage", "_meta": {"title": "Input"}, "inputs": {"image": "ComfyUI_00001_.png [output]"}},
		"11": {"class_type": "LoadImage", "inputs": {"image": "plain.png"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	check := func(params map[string]json.RawMessage) error {
		t.Helper()
		resolved, err := p.ResolveParams(params)
		if err != nil {
			t.Fatal(err)
		}
		return p.CheckFileReferences(t.Context(), resolved)
	}
	if err := check(nil); err == nil || !strings.HasPrefix(err.Error(), "workflow.10.inputs.image:") {
		t.Errorf("the workflow's own annotated value: error = %v", err)
	}
	if err := check(map[string]json.RawMessage{"Input.image": json.RawMessage(`{"fileId": "f-1"}`)}); err != nil {
		t.Errorf("an annotated value replaced by a file param: %v", err)
	}
	if err := check(map[string]json.RawMessage{"10.image": json.RawMessage(`"mine.png"`)}); err != nil {
		t.Errorf("an annotated value replaced by a plain name: %v", err)
	}
	err = check(map[string]json.RawMessage{
		"Input.image": json.RawMessage(`{"fileId": "f-1"}`),
		"11.image":    json.RawMessage(`"comfyfleet/abc/x.png"`),
	})
	var we *Error
	if !errors.As(err, &we) || we.Field != "params.11.image" || !errors.Is(err, ErrFileReference) {
		t.Errorf("a subfolder sent in params: error = %v, want one on params.11.image", err)
	}
}

func TestOutputPrefix(t *testing.T) {
	t.Parallel()
	const dir = "comfyfleet/0123456789abcdef"
	tests := []struct{ given, want string }{
		{`"ComfyUI"`, dir + "/ComfyUI"},
		{`"renders/cats"`, dir + "/renders/cats"},
		{`"../../input/x"`, dir + "/input/x"},
		{`"/abs//path/./run"`, dir + "/abs/path/run"},
		{`"C:\\out\\run"`, dir + "/C_/out/run"},
		{`"a\u0000b<c>|d?*"`, dir + "/a_b_c__d__"},
		{`"%year%/run_%width%"`, dir + "/%year%/run_%width%"},
		{`""`, dir + "/ComfyUI"},
		{`"../.."`, dir + "/ComfyUI"},
		{`["5", 0]`, dir + "/ComfyUI"},
	}
	for _, tt := range tests {
		if got := OutputPrefix(dir, json.RawMessage(tt.given)); got != tt.want {
			t.Errorf("OutputPrefix(%s) = %q, want %q", tt.given, got, tt.want)
		}
	}
}

// TestApplyOutputDir: every filename_prefix goes under the output dir,
// including one set by params; other inputs stay as they were.
func TestApplyOutputDir(t *testing.T) {
	t.Parallel()
	p, err := Parse(json.RawMessage(`{
		"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
		"2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "run"}},
		"3": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim/x"}},
		"4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := p.ResolveParams(map[string]json.RawMessage{"3.filename_prefix": json.RawMessage(`"../../input/evil"`)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.ApplyWith(resolved, ApplyOptions{OutputDir: "comfyfleet/tok"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]struct {
		Inputs map[string]any `json:"inputs"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]any{"2": "comfyfleet/tok/run", "3": "comfyfleet/tok/input/evil", "4": nil} {
		if v := got[id].Inputs["filename_prefix"]; v != want {
			t.Errorf("node %s filename_prefix = %v, want %v", id, v, want)
		}
	}
	if got["1"].Inputs["width"] != float64(8) {
		t.Errorf("other inputs changed: %v", got["1"].Inputs)
	}
}
