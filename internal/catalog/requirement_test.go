package catalog_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
)

func TestRequirementKey(t *testing.T) {
	t.Parallel()
	ix, _, _ := fleet(t)
	base := ix.Requirement(&catalog.Request{Prompt: txt2img(sdxl, "")})
	same := txt2img(sdxl, "")
	same["6"].Inputs["text"] = []byte(`"a dog in the rain"`)
	same["3"].Inputs["seed"] = []byte(`987654`)
	if got := ix.Requirement(&catalog.Request{Prompt: same, Params: []catalog.Param{param("6.text", "6", "text", `"x"`)}}); got.Key == base.Key {
		t.Errorf("a text param changed nothing, yet it is a param: want a key of its own")
	}
	if got := ix.Requirement(&catalog.Request{Prompt: same}); got.Key != base.Key {
		t.Errorf("texts and seeds changed the key: %s vs %s\n%s\n%s", got.Key, base.Key, got.Data, base.Data)
	}
	if got := ix.Requirement(&catalog.Request{Prompt: txt2img(sd15, "")}); got.Key == base.Key {
		t.Errorf("another checkpoint kept the key")
	}
	if got := ix.Requirement(&catalog.Request{Prompt: txt2img(sdxl, ""), Requires: map[string]string{"gpu": "a100"}}); got.Key == base.Key {
		t.Errorf("requires kept the key")
	}
	if strings.Contains(string(base.Data), "a cat") || !strings.Contains(string(base.Data), sdxl) {
		t.Errorf("data = %s, want the checkpoint and no text", base.Data)
	}
	back, err := catalog.DecodeRequirement(base.Data)
	if err != nil || back.Key != base.Key || len(base.Key) != 32 {
		t.Fatalf("DecodeRequirement = %v, %v; want key %s", back, err, base.Key)
	}
	if _, err := catalog.DecodeRequirement([]byte(`{`)); err == nil {
		t.Errorf("DecodeRequirement accepted garbage")
	}
}

func TestCapable(t *testing.T) {
	t.Parallel()
	ix, _, _ := fleet(t)
	cases := []struct {
		name string
		req  catalog.Request
		want []string
	}{
		{"sdxl: the a instances, and c that is not known", catalog.Request{Prompt: txt2img(sdxl, "")}, []string{"a1", "a2", "c1"}},
		{"sd15", catalog.Request{Prompt: txt2img(sd15, "")}, []string{"b1", "c1"}},
		{"labels", catalog.Request{Prompt: txt2img(sdxl, ""), Requires: map[string]string{"pool": "video"}}, []string{"a2"}},
		{"no model anywhere", catalog.Request{Prompt: txt2img("nope.safetensors", "")}, []string{"c1"}},
		{"out of range is not a requirement", catalog.Request{Prompt: txt2img(sdxl, `,
			"10": {"class_type": "MyUpscaler", "inputs": {"image": ["8", 0], "scale": 99}},
			"11": {"class_type": "SaveImage", "inputs": {"filename_prefix": "up", "images": ["10", 0]}}`)}, []string{"a1", "a2", "c1"}},
		{"no labels match", catalog.Request{Prompt: txt2img(sdxl, ""), Requires: map[string]string{"gpu": "v100"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ix.Requirement(&tc.req)
			if diff := cmp.Diff(tc.want, ix.Capable(r)); diff != "" {
				t.Errorf("Capable (-want +got):\n%s", diff)
			}
			back, err := catalog.DecodeRequirement(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ix.Capable(back)); diff != "" {
				t.Errorf("Capable of the decoded requirement (-want +got):\n%s", diff)
			}
		})
	}
	// Known nowhere: the fleet knows no catalogue, so only labels count.
	blind := catalog.NewIndex([]catalog.Member{{InstanceID: "x"}, {InstanceID: "y", Labels: map[string]string{"gpu": "t4"}}})
	r := blind.Requirement(&catalog.Request{Prompt: txt2img(sdxl, ""), Requires: map[string]string{"gpu": "t4"}})
	if diff := cmp.Diff([]string{"y"}, blind.Capable(r)); diff != "" {
		t.Errorf("blind Capable (-want +got):\n%s", diff)
	}
	if strings.Contains(string(r.Data), sdxl) {
		t.Errorf("with no catalogue known a combo value was kept: %s", r.Data)
	}
}
