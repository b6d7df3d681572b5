package comfysim

import (
	"net"
	"net/http"
)

// Read-only server information routes, in the shapes ComfyUI v0.3.65
// answered in traces/s01.

// modelFolders is folder_paths.folder_names_and_paths of the traced server.
var modelFolders = []string{"checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
	"style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models", "custom_nodes",
	"hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders"}

func (p *proc) getSystemStats(w http.ResponseWriter, r *http.Request) error {
	host, port, _ := net.SplitHostPort(p.ln.Addr().String())
	const ram = int64(34359738368)
	free := ram - ram/32
	system := newObj(
		"os", "posix",
		"ram_total", ram,
		"ram_free", free,
		"comfyui_version", "0.3.65",
		"required_frontend_version", "1.28.7",
		"installed_templates_version", nil,
		"required_templates_version", "0.1.95",
		"python_version", "3.11.2 (main, Apr 28 2025, 14:11:48) [GCC 12.2.0]",
		"pytorch_version", "1.13.0a0",
		"embedded_python", false,
		"argv", []any{"main.py", "--listen", host, "--port", port, "--disable-auto-launch"},
	)
	device := newObj("name", "cpu", "type", "cpu", "index", nil,
		"vram_total", ram, "vram_free", free, "torch_vram_total", ram, "torch_vram_free", free)
	writePy(w, http.StatusOK, encodePy(newObj("system", system, "devices", []any{device})))
	return nil
}

// features is feature_flags.get_server_features() of v0.3.65.
func (s *Sim) features() *obj {
	return newObj("supports_preview_metadata", true, "max_upload_size", s.opts.MaxUploadSize)
}

func (p *proc) getFeatures(w http.ResponseWriter, r *http.Request) error {
	writePy(w, http.StatusOK, encodePy(p.sim.features()))
	return nil
}

func (p *proc) getObjectInfo(w http.ResponseWriter, r *http.Request) error {
	writePy(w, http.StatusOK, p.sim.cat.objectInfo())
	return nil
}

func (p *proc) getObjectInfoClass(w http.ResponseWriter, r *http.Request) error {
	class := r.PathValue("node_class")
	out := newObj()
	if _, ok := p.sim.cat.spec(class); ok {
		out.set(class, p.sim.cat.classInfo(class))
	}
	writePy(w, http.StatusOK, encodePy(out))
	return nil
}

func (p *proc) getEmbeddings(w http.ResponseWriter, r *http.Request) error {
	writePy(w, http.StatusOK, []byte("[]"))
	return nil
}

func (p *proc) getExtensions(w http.ResponseWriter, r *http.Request) error {
	writePy(w, http.StatusOK, []byte("[]"))
	return nil
}

func (p *proc) getModels(w http.ResponseWriter, r *http.Request) error {
	writePy(w, http.StatusOK, encodePy(modelFolders))
	return nil
}

func (p *proc) getModelFolder(w http.ResponseWriter, r *http.Request) error {
	folder := r.PathValue("folder")
	for _, f := range modelFolders {
		if f != folder {
			continue
		}
		files := []any{}
		switch folder {
		case "checkpoints":
			files = p.sim.cat.checkpoints()
		case "loras":
			files = p.sim.cat.loraNames()
		}
		writePy(w, http.StatusOK, encodePy(files))
		return nil
	}
	writeEmpty(w, http.StatusNotFound)
	return nil
}

// getIndex answers / as the traced headless server did.
func (p *proc) getIndex(w http.ResponseWriter, r *http.Request) error {
	const page = "<!doctype html><title>ComfyUI (headless, no frontend)</title>\n"
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(page))
	return nil
}
