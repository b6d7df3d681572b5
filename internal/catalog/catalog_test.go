package catalog_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
)

// recordedPath is the /object_info a real ComfyUI v0.3.65 served.
var recordedPath = filepath.Join("..", "comfysim", "objectinfo_v0.3.65.json")

var (
	recordedOnce sync.Once
	recordedRaw  []byte
)

// recorded parses the recorded catalogue afresh (callers may change it).
func recorded(t testing.TB) *catalog.Catalog {
	t.Helper()
	recordedOnce.Do(func() {
		b, err := os.ReadFile(recordedPath)
		if err != nil {
			panic(err)
		}
		recordedRaw = b
	})
	c, err := catalog.Parse(recordedRaw)
	if err != nil {
		t.Fatalf("Parse(recorded): %v", err)
	}
	return c
}

func TestParseRecorded(t *testing.T) {
	t.Parallel()
	c := recorded(t)
	if len(c.Classes) != 378 {
		t.Fatalf("parsed %d classes, want the 378 recorded", len(c.Classes))
	}
	ks := c.Classes["KSampler"]
	var names []string
	for _, in := range ks.Inputs {
		names = append(names, in.Name)
	}
	want := []string{"model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image", "denoise"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("KSampler inputs not in declared order (-want +got):\n%s", diff)
	}
	seed, _ := ks.Input("seed")
	if seed.Type != catalog.TypeInt || !seed.Required || seed.Min != "0" || seed.Max != "18446744073709551615" || seed.Default != "0" {
		t.Errorf("KSampler.seed = %+v, want a required INT from 0 to 2^64-1", seed)
	}
	sampler, _ := ks.Input("sampler_name")
	if sampler.Type != catalog.TypeCombo || sampler.Open || len(sampler.Options) != 42 || sampler.Options[0] != "euler" {
		t.Errorf("KSampler.sampler_name = %+v, want a checked combo of 42 samplers", sampler)
	}
	if model, _ := ks.Input("model"); model.Type != "MODEL" {
		t.Errorf("KSampler.model type = %q, want MODEL", model.Type)
	}
	if ks.OutputNode || !c.Classes["SaveImage"].OutputNode {
		t.Errorf("output_node: KSampler %v, SaveImage %v; want false, true", ks.OutputNode, c.Classes["SaveImage"].OutputNode)
	}
	ckpt, _ := c.Classes["CheckpointLoaderSimple"].Input("ckpt_name")
	if ckpt.Type != catalog.TypeCombo || ckpt.Open || ckpt.Options == nil || len(ckpt.Options) != 0 {
		t.Errorf("ckpt_name = %+v, want a checked combo with no options (the recording had no models)", ckpt)
	}
	if img, _ := c.Classes["LoadImage"].Input("image"); !img.Open || img.Options != nil {
		t.Errorf("LoadImage.image = %+v, want an open combo without the upload list", img)
	}
	if dim, _ := c.Classes["LatentConcat"].Input("dim"); dim.Type != catalog.TypeCombo || dim.Open || len(dim.Options) != 6 {
		t.Errorf("LatentConcat.dim (a V3 COMBO) = %+v, want a checked combo of 6", dim)
	}
	if _, ok := c.Classes["SaveImage"].Input("prompt"); ok {
		t.Errorf("hidden input SaveImage.prompt kept")
	}
}

func TestParsePythonAndOddSpecs(t *testing.T) {
	t.Parallel()
	body := `{"Odd": {"input": {"required": {"f": ["FLOAT", {"min": -Infinity, "max": Infinity, "default": NaN}],
		"s": "NaN is a word", "weird": [{"x": 1}], "multi": [["a", "b"], {"multiselect": true}],
		"nested": [[["a"], "b"]], "v3": ["COMBO", {}]}, "optional": {"n": [[1, 2.5, true, null]]}},
		"output_node": true}, "Broken": 7}`
	c, err := catalog.Parse([]byte(body))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	odd := c.Classes["Odd"]
	got := map[string]catalog.Input{}
	for _, in := range odd.Inputs {
		got[in.Name] = in
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"f has no bounds", got["f"].Type == catalog.TypeFloat && got["f"].Min == "" && got["f"].Max == ""},
		{"a bare string is a type", got["s"].Type == "NaN is a word"},
		{"an object type is unknown", got["weird"].Type == "*"},
		{"multiselect is open", got["multi"].Open},
		{"non-scalar options are open", got["nested"].Open},
		{"COMBO without options is open", got["v3"].Open},
		{"scalar options are checked", got["n"].Type == catalog.TypeCombo && !got["n"].Open && len(got["n"].Options) == 4 && !got["n"].Required},
		{"output_node", odd.OutputNode},
		{"a broken class is kept", c.Classes["Broken"] != nil && len(c.Classes["Broken"].Inputs) == 0},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("%s: inputs %+v", ck.name, got)
		}
	}
	for _, bad := range []string{``, `[]`, `{"a": 1} {}`, `{"a": }`} {
		if _, err := catalog.Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestEncodeIsCanonical(t *testing.T) {
	t.Parallel()
	a, b := recorded(t), recorded(t)
	if a.Hash() != b.Hash() {
		t.Fatalf("two parses of one object_info hash differently")
	}
	back, err := catalog.Decode(a.Encode())
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if diff := cmp.Diff(a, back); diff != "" {
		t.Fatalf("Decode(Encode) differs (-want +got):\n%s", diff)
	}
	if back.Hash() != a.Hash() || catalog.HashOf(a.Encode()) != a.Hash() || len(a.Hash()) != 64 {
		t.Errorf("hash not stable across Decode: %s vs %s", back.Hash(), a.Hash())
	}
	withCkpt(b, "CheckpointLoaderSimple", "ckpt_name", "x.safetensors")
	if b.Hash() == a.Hash() {
		t.Errorf("a new checkpoint left the hash unchanged")
	}
	if _, err := catalog.Decode([]byte(`{"classes": {"A": null}}`)); err == nil {
		t.Errorf("Decode accepted a null class")
	}
}

func TestModelsAndSummary(t *testing.T) {
	t.Parallel()
	c := recorded(t)
	withCkpt(c, "CheckpointLoaderSimple", "ckpt_name", "b.safetensors", "a.safetensors")
	withCkpt(c, "CheckpointLoader", "ckpt_name", "a.safetensors")
	withCkpt(c, "LoraLoader", "lora_name", "detail.safetensors")
	withCkpt(c, "CLIPVisionLoader", "clip_name", "vision.safetensors")
	m := c.Models()
	if diff := cmp.Diff([]string{"a.safetensors", "b.safetensors"}, m[catalog.ModelCheckpoints]); diff != "" {
		t.Errorf("checkpoints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pixel_space"}, m[catalog.ModelVAEs]); diff != "" {
		t.Errorf("vaes (-want +got):\n%s", diff)
	}
	if strings.Contains(strings.Join(m[catalog.ModelTextEncoders], ","), "vision") {
		t.Errorf("CLIP vision models listed as text encoders: %v", m[catalog.ModelTextEncoders])
	}
	s := c.Summary("h")
	want := catalog.Summary{Hash: "h", NodeClasses: 378, Checkpoints: []string{"a.safetensors", "b.safetensors"}, Loras: []string{"detail.safetensors"}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("Summary (-want +got):\n%s", diff)
	}
	empty := recorded(t).Summary("e")
	if b, _ := json.Marshal(empty); !strings.Contains(string(b), `"checkpoints":[]`) {
		t.Errorf("empty summary = %s, want [] lists", b)
	}
}

// withCkpt sets the options of a combo input.
func withCkpt(c *catalog.Catalog, class, input string, options ...string) {
	in, ok := c.Classes[class].Input(input)
	if !ok {
		panic(class + "." + input)
	}
	in.Options = make([]any, len(options))
	for i, o := range options {
		in.Options[i] = o
	}
}

// BenchmarkParse parses the recorded /object_info (378 classes, 321 KB).
func BenchmarkParse(b *testing.B) {
	recorded(b)
	for b.Loop() {
		if _, err := catalog.Parse(recordedRaw); err != nil {
			b.Fatal(err)
		}
	}
}
