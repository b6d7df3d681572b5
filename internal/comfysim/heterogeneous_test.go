package comfysim

import (
	"strings"
	"testing"
)

// TestHeterogeneous: an instance offers its own checkpoints, LoRAs and
// node classes, in /object_info and in its validation, and SetModels
// changes them as a model folder change would.
func TestHeterogeneous(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{Checkpoints: []string{"flux.safetensors"}, Loras: []string{"detail.safetensors"},
		MissingClasses: []string{"ImageInvert"}})
	all := get(t, s.URL()+"/object_info").json(t).(*obj)
	if all.at("ImageInvert") != nil || all.at("ImageBlur") == nil {
		t.Errorf("object_info: ImageInvert present %v, ImageBlur present %v; want false, true",
			all.at("ImageInvert") != nil, all.at("ImageBlur") != nil)
	}
	ckpts := all.sub("CheckpointLoaderSimple").sub("input").sub("required").at("ckpt_name").([]any)[0]
	loras := all.sub("LoraLoader").sub("input").sub("required").at("lora_name").([]any)[0]
	if pyRepr(ckpts) != "['flux.safetensors']" || pyRepr(loras) != "['detail.safetensors']" {
		t.Errorf("combos: ckpt_name %s, lora_name %s", pyRepr(ckpts), pyRepr(loras))
	}
	if r := get(t, s.URL()+"/object_info/ImageInvert"); r.status != 200 || strings.TrimSpace(string(r.body)) != "{}" {
		t.Errorf("object_info/ImageInvert = %d %s, want 200 {}", r.status, r.body)
	}
	if r := get(t, s.URL()+"/models/loras"); pyRepr(r.json(t)) != "['detail.safetensors']" {
		t.Errorf("/models/loras = %s", r.body)
	}
	missing := `{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
		"2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
		"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}`
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+missing+`}`)
	if r.status != 400 || !strings.Contains(string(r.body), "Cannot execute because node ImageInvert does not exist.") {
		t.Errorf("a prompt with a missing class: %d %s", r.status, r.body)
	}
	ckpt := func(name string) string {
		return `{"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "` + name + `"}},
			"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
			"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["4", 1]}},
			"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 1, "cfg": 1.0, "sampler_name": "euler",
				"scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0]}},
			"8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
			"9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}}}`
	}
	if r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+ckpt("sd15.safetensors")+`}`); r.status != 400 || !strings.Contains(string(r.body), "value_not_in_list") {
		t.Errorf("a checkpoint the instance lacks: %d %s", r.status, r.body)
	}
	s.SetModels([]string{"sd15.safetensors"}, nil)
	if r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+ckpt("sd15.safetensors")+`}`); r.status != 200 {
		t.Errorf("after SetModels: %d %s", r.status, r.body)
	}
	all = get(t, s.URL()+"/object_info").json(t).(*obj)
	ckpts = all.sub("CheckpointLoaderSimple").sub("input").sub("required").at("ckpt_name").([]any)[0]
	loras = all.sub("LoraLoader").sub("input").sub("required").at("lora_name").([]any)[0]
	if pyRepr(ckpts) != "['sd15.safetensors']" || pyRepr(loras) != "['detail.safetensors']" {
		t.Errorf("object_info after SetModels: ckpt_name %s, lora_name %s", pyRepr(ckpts), pyRepr(loras))
	}
}
