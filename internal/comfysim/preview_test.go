package comfysim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"image/jpeg"
	"testing"
)

// samplerPrompt is a text-to-image graph whose KSampler runs steps steps.
func samplerPrompt(steps int) string {
	return `{"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},` +
		` "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},` +
		` "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},` +
		` "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": ` + itoa(steps) + `, "cfg": 7.0, "sampler_name": "euler",` +
		` "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0]}},` +
		` "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},` +
		` "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "pv"}}}`
}

// TestSamplerPreviews: with a preview method, every sampler step sends a
// JPEG of the latent's size, after its progress (type 1) or, for a client
// that negotiated metadata, before it (type 4); without one, none.
func TestSamplerPreviews(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     Options
		metadata bool // the client negotiates supports_preview_metadata
		wantType uint32
	}{
		{"no preview method", Options{}, false, 0},
		{"preview method none", Options{PreviewMethod: "none"}, true, 0},
		{"legacy client", Options{PreviewMethod: "auto"}, false, 1},
		{"client with metadata", Options{PreviewMethod: "latent2rgb"}, true, 4},
		{"server before v0.3.45", Options{PreviewMethod: "auto", NoPreviewMetadata: true}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSim(t, tt.opts)
			ws := dialWS(t, s, "?clientId=pv")
			if tt.metadata {
				ws.send(t, `{"type": "feature_flags", "data": {"supports_preview_metadata": true}}`)
			}
			ws.until(t, func(f wsFrameT) bool { return f.typ == "status" })
			if tt.metadata && !tt.opts.NoPreviewMetadata {
				// The server reads client frames in its own loop: submit
				// only after its reply says the flags were applied.
				ws.until(t, func(f wsFrameT) bool { return f.typ == "feature_flags" })
			}
			id := submit(t, s, samplerPrompt(3), "pv")
			frames := ws.untilDone(t, id)
			var previews []wsFrameT
			for i, f := range frames {
				if !f.binary {
					continue
				}
				previews = append(previews, f)
				next := frames[i-1] // type 1 follows its progress
				if tt.wantType == 4 {
					next = frames[i+1] // type 4 precedes it
				}
				if next.typ != "progress" || next.field("node") != "3" {
					t.Errorf("preview %d is not next to the sampler's progress: %v", len(previews), frameTypes(frames))
				}
				checkJPEGPreview(t, f, tt.wantType, id)
			}
			want := 0
			if tt.wantType != 0 {
				want = 3
			}
			if len(previews) != want {
				t.Errorf("got %d previews, want %d: %v", len(previews), want, frameTypes(frames))
			}
		})
	}
}

func checkJPEGPreview(t *testing.T, f wsFrameT, wantType uint32, promptID string) {
	t.Helper()
	typ := binary.BigEndian.Uint32(f.data)
	if typ != wantType {
		t.Fatalf("preview of type %d, want %d", typ, wantType)
	}
	img := f.data[8:]
	if typ == 1 {
		if format := binary.BigEndian.Uint32(f.data[4:]); format != 1 {
			t.Errorf("type-1 format %d, want 1 (JPEG)", format)
		}
	} else {
		n := binary.BigEndian.Uint32(f.data[4:])
		meta, err := parsePy(f.data[8 : 8+n])
		if err != nil {
			t.Fatal(err)
		}
		m := meta.(*obj)
		if it, _ := m.str("image_type"); it != "image/jpeg" {
			t.Errorf("image_type %q, want image/jpeg", it)
		}
		if pid, _ := m.str("prompt_id"); pid != promptID {
			t.Errorf("prompt_id %q, want %q", pid, promptID)
		}
		img = f.data[8+n:]
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("preview is not a JPEG: %v", err)
	}
	if cfg.Width != 8 || cfg.Height != 6 {
		t.Errorf("preview is %dx%d, want the latent's 8x6", cfg.Width, cfg.Height)
	}
}

// TestStreamedImagesAreLogged: the log holds the hash of every image a
// SaveImageWebsocket node sent, equal to the frame's image bytes.
func TestStreamedImagesAreLogged(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=sw")
	ws.until(t, func(f wsFrameT) bool { return f.typ == "status" })
	prompt := `{"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 16, "batch_size": 2, "color": 255}},` +
		` "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}`
	id := submit(t, s, prompt, "sw")
	var sums [][32]byte
	for _, f := range ws.untilDone(t, id) {
		if f.binary {
			sums = append(sums, sha256.Sum256(f.data[8:]))
		}
	}
	logged := s.Log().Streamed(id)
	if len(logged) != 2 || len(sums) != 2 {
		t.Fatalf("logged %d images, received %d; want 2 and 2", len(logged), len(sums))
	}
	for i, im := range logged {
		if im.Node != "2" || im.Format != "png" || im.SHA256 != sums[i] {
			t.Errorf("image %d: logged %+v, want node 2, png and the received bytes' hash", i, im)
		}
	}
}
