package app

import (
	"encoding/json"
	"testing"
)

// TestProbePrompt: the probe gets fresh seeds and colors each time, and
// keeps every other input, links included, as written.
func TestProbePrompt(t *testing.T) {
	wf := []byte(`{"3": {"class_type": "KSampler", "inputs": {"seed": 7, "noise_seed": 7, "steps": 1, "model": ["4", 0], "cfg": 1.5}},` +
		` "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}, "_meta": {"title": "Model"}}}`)
	type node struct {
		ClassType string         `json:"class_type"`
		Inputs    map[string]any `json:"inputs"`
		Meta      map[string]any `json:"_meta"`
	}
	decode := func(b []byte) map[string]node {
		t.Helper()
		var m map[string]node
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, err := probePrompt(wf)
	if err != nil {
		t.Fatal(err)
	}
	b, err := probePrompt(wf)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := decode(a), decode(b)
	if pa["3"].Inputs["seed"] == pb["3"].Inputs["seed"] || pa["3"].Inputs["seed"] == 7.0 || pa["3"].Inputs["noise_seed"] == 7.0 {
		t.Errorf("seeds not renewed: %v then %v", pa["3"].Inputs, pb["3"].Inputs)
	}
	in := pa["3"].Inputs
	if in["steps"] != 1.0 || in["cfg"] != 1.5 || len(in["model"].([]any)) != 2 || pa["4"].Inputs["ckpt_name"] != "a.safetensors" ||
		pa["4"].Meta["title"] != "Model" {
		t.Errorf("other inputs changed: %s", a)
	}

	d1, err := probePrompt(nil)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := probePrompt(nil)
	c1, c2 := decode(d1)["1"], decode(d2)["1"]
	if c1.ClassType != "EmptyImage" || decode(d1)["2"].ClassType != "PreviewImage" {
		t.Errorf("default probe: %s", d1)
	}
	if c1.Inputs["color"] == c2.Inputs["color"] {
		t.Errorf("the default probe's color did not change: %v", c1.Inputs["color"])
	}
}
