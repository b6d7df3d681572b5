package catalog_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
)

const (
	sdxl = "sd_xl_base_1.0.safetensors"
	sd15 = "v1-5-pruned-emaonly.safetensors"
)

// fleet is two kinds of instance: "a" (two instances, gpu=a100) with the
// SDXL checkpoint and a custom class MyUpscaler; "b" (one, gpu=t4) with
// SD 1.5 only, and one instance "c" whose catalogue is not known yet.
func fleet(t testing.TB) (*catalog.Index, string, string) {
	t.Helper()
	a, b := recorded(t), recorded(t)
	withCkpt(a, "CheckpointLoaderSimple", "ckpt_name", sdxl)
	a.Classes["MyUpscaler"] = &catalog.Class{Inputs: []catalog.Input{
		{Name: "image", Required: true, Type: "IMAGE"},
		{Name: "scale", Required: true, Type: catalog.TypeFloat, Min: "1.0", Max: "4.0"},
	}}
	withCkpt(b, "CheckpointLoaderSimple", "ckpt_name", sd15)
	ha, hb := a.Hash(), b.Hash()
	ix := catalog.NewIndex([]catalog.Member{
		{InstanceID: "a1", Labels: map[string]string{"gpu": "a100"}, Hash: ha, Catalog: a},
		{InstanceID: "a2", Labels: map[string]string{"gpu": "a100", "pool": "video"}, Hash: ha, Catalog: a},
		{InstanceID: "b1", Labels: map[string]string{"gpu": "t4"}, Hash: hb, Catalog: b},
		{InstanceID: "c1", Labels: map[string]string{"gpu": "h100"}},
	})
	return ix, ha, hb
}

// txt2img is the default ComfyUI workflow with ckpt and extra nodes merged in.
func txt2img(ckpt string, extra string) map[string]catalog.Node {
	doc := `{
	"3": {"class_type": "KSampler", "_meta": {"title": "KSampler"}, "inputs": {"seed": 1, "steps": 20, "cfg": 8.0,
		"sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
		"positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
	"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "` + ckpt + `"}},
	"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
	"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
	"7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
	"8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
	"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out", "images": ["8", 0]}}` + extra + `}`
	return nodes(doc)
}

func nodes(doc string) map[string]catalog.Node {
	var raw map[string]struct {
		ClassType string                     `json:"class_type"`
		Inputs    map[string]json.RawMessage `json:"inputs"`
		Meta      struct {
			Title string `json:"title"`
		} `json:"_meta"`
	}
	if err := json.Unmarshal([]byte(doc), &raw); err != nil {
		panic(err)
	}
	out := map[string]catalog.Node{}
	for id, n := range raw {
		out[id] = catalog.Node{ClassType: n.ClassType, Title: n.Meta.Title, Inputs: n.Inputs}
	}
	return out
}

func param(key, node, input, value string) catalog.Param {
	return catalog.Param{Key: key, NodeID: node, Input: input, Value: json.RawMessage(value)}
}

const upscaled = `,
	"10": {"class_type": "MyUpscaler", "inputs": {"image": ["8", 0], "scale": 2}},
	"11": {"class_type": "SaveImage", "inputs": {"filename_prefix": "up", "images": ["10", 0]}}`

func TestCheckAccepts(t *testing.T) {
	t.Parallel()
	ix, ha, hb := fleet(t)
	cases := []struct {
		name      string
		req       catalog.Request
		hashes    []string
		instances []string
	}{
		{"sdxl runs on a", catalog.Request{Prompt: txt2img(sdxl, "")}, []string{ha}, []string{"a1", "a2"}},
		{"sd15 runs on b", catalog.Request{Prompt: txt2img(sd15, "")}, []string{hb}, []string{"b1"}},
		{"custom class on a", catalog.Request{Prompt: txt2img(sdxl, upscaled)}, []string{ha}, []string{"a1", "a2"}},
		{"params choose the model", catalog.Request{Prompt: txt2img("missing.safetensors", ""),
			Params: []catalog.Param{param("4.ckpt_name", "4", "ckpt_name", `"`+sd15+`"`)}}, []string{hb}, []string{"b1"}},
		{"params by title and existing input", catalog.Request{Prompt: txt2img(sdxl, ""),
			Params: []catalog.Param{param("KSampler.steps", "3", "steps", "30"), param("6.text", "6", "text", `"a dog"`)}}, []string{ha}, []string{"a1", "a2"}},
		{"params may set an optional input the workflow leaves out", catalog.Request{Prompt: txt2img(sdxl, `,
			"12": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}}`),
			Params: []catalog.Param{param("3.denoise", "3", "denoise", "0.5")}}, []string{ha}, []string{"a1", "a2"}},
		{"requires narrows", catalog.Request{Prompt: txt2img(sdxl, ""), Requires: map[string]string{"pool": "video"}},
			[]string{ha}, []string{"a2"}},
		{"one output broken everywhere, another fine (ComfyUI runs the rest)", catalog.Request{Prompt: txt2img(sdxl, `,
			"12": {"class_type": "ImageInvert", "inputs": {}},
			"13": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["12", 0]}}`)}, []string{ha}, []string{"a1", "a2"}},
		{"a node no output needs is not checked", catalog.Request{Prompt: txt2img(sdxl, `,
			"12": {"class_type": "EmptyLatentImage", "inputs": {"width": 1}}`)}, []string{ha}, []string{"a1", "a2"}},
		{"a file param is not checked", catalog.Request{Prompt: txt2img(sdxl, `,
			"12": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
			"13": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["12", 0]}}`),
			Params: []catalog.Param{{Key: "4.ckpt_name", NodeID: "4", Input: "ckpt_name", Value: json.RawMessage(`{"fileId":"f"}`), File: true}}},
			[]string{ha, hb}, []string{"a1", "a2", "b1"}},
		{"__value__, numeric strings and ints for floats", catalog.Request{Prompt: txt2img(sdxl, ""),
			Params: []catalog.Param{param("3.steps", "3", "steps", `{"__value__": "25"}`), param("3.cfg", "3", "cfg", "7")}},
			[]string{ha}, []string{"a1", "a2"}},
		{"a cycle is left to the instance", catalog.Request{Prompt: txt2img(sdxl, `,
			"12": {"class_type": "ImageInvert", "inputs": {"image": ["13", 0]}},
			"13": {"class_type": "ImageInvert", "inputs": {"image": ["12", 0]}},
			"14": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["13", 0]}}`)}, []string{ha}, []string{"a1", "a2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := ix.Check(&tc.req)
			if v.Problem != nil {
				t.Fatalf("Check: problem %+v; want accepted", v.Problem)
			}
			if !v.Checked {
				t.Fatalf("Check: not checked")
			}
			if diff := cmp.Diff(tc.hashes, v.Hashes); diff != "" {
				t.Errorf("Hashes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.instances, v.Instances); diff != "" {
				t.Errorf("Instances (-want +got):\n%s", diff)
			}
		})
	}
}

// nodeErrorsJSON renders a problem's node_errors as the API would.
func nodeErrorsJSON(p *catalog.Problem) string {
	b, err := json.Marshal(p.NodeErrors)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestCheckRefuses(t *testing.T) {
	t.Parallel()
	ix, _, _ := fleet(t)
	cases := []struct {
		name    string
		req     catalog.Request
		field   string
		typ     string
		message string
		details string
		errors  string // node_errors, exactly
	}{
		{
			name: "typo'd class", req: catalog.Request{Prompt: txt2img(sdxl, `,
				"10": {"class_type": "VAEDecodeTypo", "_meta": {"title": "Decode"}, "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
				"11": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["10", 0]}}`)},
			field: "workflow", typ: "invalid_prompt", message: "Cannot execute because node VAEDecodeTypo does not exist.",
			details: "Node ID '#10'",
			errors: `{"10":{"errors":[{"type":"missing_node_type","message":"Node 'Decode' not found. The custom node may not be installed.",` +
				`"details":"Node ID '#10'","extra_info":{"node_id":"10","class_type":"VAEDecodeTypo","node_title":"Decode"}}],` +
				`"dependent_outputs":["11"],"class_type":"VAEDecodeTypo"}}`,
		},
		{
			name: "a model no instance has", req: catalog.Request{Prompt: txt2img("sdxl_typo.safetensors", "")},
			field: "workflow", typ: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation",
			errors: `{"4":{"errors":[{"type":"value_not_in_list","message":"Value not in list",` +
				`"details":"ckpt_name: 'sdxl_typo.safetensors' not in ['sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors']",` +
				`"extra_info":{"input_name":"ckpt_name","input_config":[["sd_xl_base_1.0.safetensors","v1-5-pruned-emaonly.safetensors"],{}],` +
				`"received_value":"sdxl_typo.safetensors"}}],"dependent_outputs":["9"],"class_type":"CheckpointLoaderSimple"}}`,
		},
		{
			name: "typo'd params input by title", req: catalog.Request{Prompt: txt2img(sdxl, ""),
				Params: []catalog.Param{param("KSampler.step", "3", "step", "30")}},
			field: "params.KSampler.step", typ: "invalid_params", message: "Params name an input their node does not have",
			details: `step: KSampler has no input "step"; did you mean "steps"?`,
			errors: `{"3":{"errors":[{"type":"unknown_input","message":"Input does not exist on this node",` +
				`"details":"step: KSampler has no input \"step\"; did you mean \"steps\"?",` +
				`"extra_info":{"input_name":"step","params_key":"KSampler.step"}}],"dependent_outputs":["9"],"class_type":"KSampler"}}`,
		},
		{
			name: "typo'd params input by id", req: catalog.Request{Prompt: txt2img(sdxl, ""),
				Params: []catalog.Param{param("6.txt", "6", "txt", `"a dog"`)}},
			field: "params.6.txt", typ: "invalid_params", message: "Params name an input their node does not have",
			details: `txt: CLIPTextEncode has no input "txt"; did you mean "text"?`,
		},
		{
			name: "missing required input", req: catalog.Request{Prompt: nodes(`{
				"1": {"class_type": "EmptyImage", "inputs": {"height": 48, "batch_size": 1, "color": 0}},
				"2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
				"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}`)},
			field: "workflow", typ: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation",
			errors: `{"1":{"errors":[{"type":"required_input_missing","message":"Required input is missing","details":"width",` +
				`"extra_info":{"input_name":"width"}}],"dependent_outputs":["3"],"class_type":"EmptyImage"}}`,
		},
		{
			name: "value below min (s04's value_out_of_range)", req: catalog.Request{Prompt: nodes(`{
				"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 48, "batch_size": 1, "color": 0}},
				"2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
				"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}`)},
			field: "workflow", typ: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation",
			errors: `{"1":{"errors":[{"type":"value_smaller_than_min","message":"Value 0 smaller than min of 1","details":"width",` +
				`"extra_info":{"input_name":"width","input_config":["INT",{"default":512,"min":1,"max":16384,"step":1}],"received_value":0}}],` +
				`"dependent_outputs":["3"],"class_type":"EmptyImage"}}`,
		},
		{
			name: "float above max", req: catalog.Request{Prompt: txt2img(sdxl, ""),
				Params: []catalog.Param{param("3.cfg", "3", "cfg", "100.5")}},
			field: "workflow", typ: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation",
		},
		{
			name: "combo value (s04's bad_combo_value)", req: catalog.Request{Prompt: nodes(`{
				"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
				"2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "magic", "width": 32, "height": 32, "crop": "disabled"}},
				"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}`)},
			field: "workflow", typ: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation",
			errors: `{"2":{"errors":[{"type":"value_not_in_list","message":"Value not in list",` +
				`"details":"upscale_method: 'magic' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",` +
				`"extra_info":{"input_name":"upscale_method","input_config":[["nearest-exact","bilinear","area","bicubic","lanczos"],{}],` +
				`"received_value":"magic"}}],"dependent_outputs":["3"],"class_type":"ImageScale"}}`,
		},
		{
			name: "no output node", req: catalog.Request{Prompt: nodes(`{"1": {"class_type": "EmptyImage", "inputs": {}}}`)},
			field: "workflow", typ: "prompt_no_outputs", message: "Prompt has no outputs", errors: `{}`,
		},
		{
			name: "a class on a and a model only on b", req: catalog.Request{Prompt: txt2img(sd15, upscaled)},
			field: "workflow", typ: "no_capable_instance", message: "No single instance can run this workflow",
			details: "a1, a2: node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'v1-5-pruned-emaonly.safetensors' not in ['sd_xl_base_1.0.safetensors']; " +
				"b1: node 10 (MyUpscaler): Node 'MyUpscaler' not found. The custom node may not be installed.: Node ID '#10'",
			errors: `{}`,
		},
		{
			name: "requires leaves only instances without the model", req: catalog.Request{Prompt: txt2img(sdxl, ""),
				Requires: map[string]string{"gpu": "t4"}},
			field: "workflow", typ: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation",
		},
		{
			name: "requires no instance matches", req: catalog.Request{Prompt: txt2img(sdxl, ""),
				Requires: map[string]string{"gpu": "a100", "pool": "image"}},
			field: "requires", typ: "no_matching_labels", message: "No configured instance has the labels gpu=a100, pool=image",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := ix.Check(&tc.req)
			p := v.Problem
			if p == nil {
				t.Fatalf("Check accepted (hashes %v); want %s", v.Hashes, tc.typ)
			}
			got := []string{p.Field, p.Type, p.Message}
			if diff := cmp.Diff([]string{tc.field, tc.typ, tc.message}, got); diff != "" {
				t.Errorf("field, type, message (-want +got):\n%s", diff)
			}
			if tc.details != "" && p.Details != tc.details {
				t.Errorf("details:\n got %s\nwant %s", p.Details, tc.details)
			}
			if tc.errors != "" && nodeErrorsJSON(p) != tc.errors {
				t.Errorf("node_errors:\n got %s\nwant %s", nodeErrorsJSON(p), tc.errors)
			}
			if len(v.Hashes)+len(v.Instances) != 0 {
				t.Errorf("a refused prompt lists capable catalogues %v, instances %v", v.Hashes, v.Instances)
			}
		})
	}
}

func TestCheckNoCapableListsCatalogs(t *testing.T) {
	t.Parallel()
	ix, ha, hb := fleet(t)
	v := ix.Check(&catalog.Request{Prompt: txt2img(sd15, upscaled)})
	if v.Problem == nil || len(v.Problem.Catalogs) != 2 {
		t.Fatalf("problem = %+v, want two catalogues explained", v.Problem)
	}
	a, b := v.Problem.Catalogs[0], v.Problem.Catalogs[1]
	if a.Hash != ha || b.Hash != hb || strings.Join(a.Instances, ",") != "a1,a2" || strings.Join(b.Instances, ",") != "b1" {
		t.Errorf("catalogs = %+v", v.Problem.Catalogs)
	}
	if _, ok := a.NodeErrors["4"]; !ok || len(a.NodeErrors) != 1 {
		t.Errorf("a lacks the checkpoint only; got %s", mustJSON(a.NodeErrors))
	}
	if e := b.NodeErrors["10"]; e == nil || e.Errors[0].Type != catalog.ErrMissingNodeType {
		t.Errorf("b lacks MyUpscaler; got %s", mustJSON(b.NodeErrors))
	}
	if s := v.Problem.Sentence(); !strings.HasPrefix(s, "No single instance can run this workflow: a1, a2: node 4") {
		t.Errorf("Sentence() = %q", s)
	}
}

func TestCheckUnknownCatalogues(t *testing.T) {
	t.Parallel()
	ix, _, _ := fleet(t)
	v := ix.Check(&catalog.Request{Prompt: txt2img("anything", ""), Requires: map[string]string{"gpu": "h100"}})
	if v.Checked || v.Problem != nil || strings.Join(v.Unknown, ",") != "c1" {
		t.Errorf("only an unread instance matches: verdict %+v, want unchecked with c1 unknown", v)
	}
	v = ix.Check(&catalog.Request{Prompt: txt2img(sdxl, "")})
	if !v.Checked || strings.Join(v.Unknown, ",") != "c1" {
		t.Errorf("verdict %+v, want checked with c1 unknown", v)
	}
	empty := catalog.NewIndex(nil)
	if v := empty.Check(&catalog.Request{Prompt: txt2img("x", "")}); v.Checked || v.Problem != nil || empty.Known() {
		t.Errorf("empty index: %+v", v)
	}
}

func TestSentence(t *testing.T) {
	t.Parallel()
	ix, _, _ := fleet(t)
	v := ix.Check(&catalog.Request{Prompt: txt2img("nope.safetensors", "")})
	want := "Prompt outputs failed validation: node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'nope.safetensors' not in ['sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors']"
	if got := v.Problem.Sentence(); got != want {
		t.Errorf("Sentence():\n got %s\nwant %s", got, want)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// BenchmarkCheck validates chains of n nodes: the time per node stays flat
// as n grows (Check is linear in the prompt).
func BenchmarkCheck(b *testing.B) {
	ix, _, _ := fleet(b)
	for _, n := range []int{100, 1000, 10000} {
		var sb strings.Builder
		sb.WriteString(`{"0": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}}`)
		for i := 1; i < n; i++ {
			fmt.Fprintf(&sb, `, "%d": {"class_type": "ImageBlur", "inputs": {"image": ["%d", 0], "blur_radius": 3, "sigma": 1.0}}`, i, i-1)
		}
		fmt.Fprintf(&sb, `, "out": {"class_type": "SaveImage", "inputs": {"images": ["%d", 0], "filename_prefix": "x"}}}`, n-1)
		req := &catalog.Request{Prompt: nodes(sb.String())}
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for b.Loop() {
				if v := ix.Check(req); v.Problem != nil {
					b.Fatal(v.Problem.Sentence())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/node")
		})
	}
}

// TestManyUnknownParamsStaySmall: a request naming thousands of inputs
// that do not exist is answered with a bounded report.
func TestManyUnknownParamsStaySmall(t *testing.T) {
	t.Parallel()
	ix, _, _ := fleet(t)
	var params []catalog.Param
	for i := range 5000 {
		params = append(params, param(fmt.Sprintf("6.input_%d", i), "6", fmt.Sprintf("input_%d", i), `"x"`))
	}
	v := ix.Check(&catalog.Request{Prompt: txt2img(sdxl, ""), Params: params})
	if v.Problem == nil || v.Problem.Type != catalog.ProblemInvalidParams {
		t.Fatalf("Check = %+v, want invalid_params", v.Problem)
	}
	if n := len(v.Problem.NodeErrors["6"].Errors); n > 32 {
		t.Errorf("%d node errors reported, want at most 32", n)
	}
	if !strings.Contains(v.Problem.Details, "and 4968 more") || len(v.Problem.Details) > 8<<10 {
		t.Errorf("details of %d bytes, ending %q", len(v.Problem.Details), v.Problem.Details[max(0, len(v.Problem.Details)-40):])
	}
}
