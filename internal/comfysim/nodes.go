package comfysim

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"
)

// Values flowing along links. Images are solid colour per batch item; sizes,
// batch counts and channel counts are tracked so the shape errors ComfyUI
// raises (reflect padding, torch.cat) happen for the same inputs.

type imageVal struct {
	w, h, ch int
	px       [][4]uint8 // one colour per batch item
}

type maskVal struct {
	w, h, batch int
	value       float64
}

type latentVal struct {
	w, h, batch int // in latent cells (pixels / 8)
	rgb         [4]uint8
}

// opaqueVal stands for models, CLIP, conditioning and every other type the
// simulator does not model.
type opaqueVal struct {
	typ  string
	desc string
	ckpt string // for MODEL: the checkpoint it came from
}

func (v imageVal) String() string {
	c := v.px[0]
	return fmt.Sprintf("tensor([[[[%.4f, %.4f, %.4f], ...]]]) (shape [%d, %d, %d, %d])",
		float64(c[0])/255, float64(c[1])/255, float64(c[2])/255, len(v.px), v.h, v.w, v.ch)
}

func (v maskVal) String() string {
	return fmt.Sprintf("tensor([[[%.4f, ...]]]) (shape [%d, %d, %d])", v.value, v.batch, v.h, v.w)
}

func (v latentVal) String() string {
	return fmt.Sprintf("{'samples': tensor(shape [%d, 4, %d, %d])}", v.batch, v.h, v.w)
}

func (v opaqueVal) String() string { return v.desc }

// nodeFunc runs one node: outputs by slot, the UI dict (or nil), or an error
// (*pyExc for a node exception, errInterrupted, errAborted).
type nodeFunc func(x *nodeRun) ([]any, *obj, error)

var nodeFuncs = map[string]nodeFunc{
	"EmptyImage":             runEmptyImage,
	"LoadImage":              runLoadImage,
	"LoadImageMask":          runLoadImageMask,
	"ImageInvert":            runImageInvert,
	"ImageScale":             runImageScale,
	"ImageScaleBy":           runImageScaleBy,
	"ImageBlur":              runImageBlur,
	"SolidMask":              runSolidMask,
	"JoinImageWithAlpha":     runJoinImageWithAlpha,
	"ImageBatch":             runImageBatch,
	"SaveImage":              runSaveImage,
	"PreviewImage":           runPreviewImage,
	"SaveImageWebsocket":     runSaveImageWebsocket,
	"CheckpointLoaderSimple": runCheckpointLoader,
	"CLIPTextEncode":         runCLIPTextEncode,
	"EmptyLatentImage":       runEmptyLatentImage,
	"KSampler":               runKSampler,
	"KSamplerAdvanced":       runKSampler,
	"VAEDecode":              runVAEDecode,
	"VAEEncode":              runVAEEncode,
}

func colorOf(c int) [4]uint8 {
	return [4]uint8{uint8(c >> 16), uint8(c >> 8), uint8(c), 255}
}

func solid(w, h, ch, batch int, c [4]uint8) imageVal {
	px := make([][4]uint8, batch)
	for i := range px {
		px[i] = c
	}
	return imageVal{w: w, h: h, ch: ch, px: px}
}

func runEmptyImage(x *nodeRun) ([]any, *obj, error) {
	img := solid(x.int("width"), x.int("height"), 3, x.int("batch_size"), colorOf(x.int("color")))
	return []any{img}, nil, nil
}

func runImageInvert(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("image")
	if err != nil {
		return nil, nil, err
	}
	out := imageVal{w: img.w, h: img.h, ch: img.ch, px: make([][4]uint8, len(img.px))}
	for i, c := range img.px {
		out.px[i] = [4]uint8{255 - c[0], 255 - c[1], 255 - c[2], 255 - c[3]}
	}
	return []any{out}, nil, nil
}

func runImageScale(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("image")
	if err != nil {
		return nil, nil, err
	}
	w, h := x.int("width"), x.int("height")
	switch {
	case w == 0 && h == 0:
		return []any{img}, nil, nil
	case w == 0:
		w = max(1, int(math.RoundToEven(float64(img.w)*float64(h)/float64(img.h))))
	case h == 0:
		h = max(1, int(math.RoundToEven(float64(img.h)*float64(w)/float64(img.w))))
	}
	return []any{imageVal{w: w, h: h, ch: img.ch, px: img.px}}, nil, nil
}

func runImageScaleBy(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("image")
	if err != nil {
		return nil, nil, err
	}
	s := x.float("scale_by")
	w, h := int(math.RoundToEven(float64(img.w)*s)), int(math.RoundToEven(float64(img.h)*s))
	return []any{imageVal{w: w, h: h, ch: img.ch, px: img.px}}, nil, nil
}

// runImageBlur fails like torch's reflect padding when the radius does not
// fit the image (the runtime error recorded in traces/s04).
func runImageBlur(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("image")
	if err != nil {
		return nil, nil, err
	}
	r := x.int("blur_radius")
	if r == 0 {
		return []any{img}, nil, nil
	}
	shape := fmt.Sprintf("[%d, %d, %d, %d]", len(img.px), img.ch, img.h, img.w)
	for _, d := range []struct{ dim, size int }{{3, img.w}, {2, img.h}} {
		if r >= d.size {
			return nil, nil, &pyExc{typ: "RuntimeError", msg: fmt.Sprintf("Argument #4: Padding size should be less than the corresponding input dimension, but got: padding (%d, %d) at dimension %d of input %s", r, r, d.dim, shape)}
		}
	}
	return []any{img}, nil, nil
}

func runSolidMask(x *nodeRun) ([]any, *obj, error) {
	return []any{maskVal{w: x.int("width"), h: x.int("height"), batch: 1, value: x.float("value")}}, nil, nil
}

func runJoinImageWithAlpha(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("image")
	if err != nil {
		return nil, nil, err
	}
	m, ok := x.in["alpha"].(maskVal)
	if !ok {
		return nil, nil, x.notTensor("alpha")
	}
	a := uint8(math.Round((1 - m.value) * 255))
	out := imageVal{w: img.w, h: img.h, ch: 4, px: make([][4]uint8, min(len(img.px), m.batch))}
	for i := range out.px {
		c := img.px[i]
		out.px[i] = [4]uint8{c[0], c[1], c[2], a}
	}
	return []any{out}, nil, nil
}

// runImageBatch concatenates like torch.cat, after ComfyUI rescales image2.
func runImageBatch(x *nodeRun) ([]any, *obj, error) {
	a, err := x.image("image1")
	if err != nil {
		return nil, nil, err
	}
	b, err := x.image("image2")
	if err != nil {
		return nil, nil, err
	}
	if a.ch != b.ch {
		return nil, nil, &pyExc{typ: "RuntimeError", msg: fmt.Sprintf("Sizes of tensors must match except in dimension 0. Expected size %d but got size %d for tensor number 1 in the list.", a.ch, b.ch)}
	}
	px := append(append([][4]uint8{}, a.px...), b.px...)
	return []any{imageVal{w: a.w, h: a.h, ch: a.ch, px: px}}, nil, nil
}

func runLoadImage(x *nodeRun) ([]any, *obj, error) {
	img, alpha, err := x.loadImage(x.str("image"))
	if err != nil {
		return nil, nil, err
	}
	mask := maskVal{w: 64, h: 64, batch: 1}
	if alpha >= 0 {
		mask = maskVal{w: img.w, h: img.h, batch: 1, value: 1 - float64(alpha)/255}
	}
	return []any{img, mask}, nil, nil
}

func runLoadImageMask(x *nodeRun) ([]any, *obj, error) {
	img, alpha, err := x.loadImage(x.str("image"))
	if err != nil {
		return nil, nil, err
	}
	c := img.px[0]
	v := map[string]float64{"red": float64(c[0]), "green": float64(c[1]), "blue": float64(c[2]), "alpha": float64(max(alpha, 0))}[x.str("channel")] / 255
	if x.str("channel") == "alpha" {
		v = 1 - v
	}
	return []any{maskVal{w: img.w, h: img.h, batch: 1, value: v}}, nil, nil
}

func runSaveImage(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("images")
	if err != nil {
		return nil, nil, err
	}
	results, err := x.saveImages(img, dirOutput, x.str("filename_prefix"))
	if err != nil {
		return nil, nil, err
	}
	return []any{}, newObj("images", results), nil
}

func runPreviewImage(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("images")
	if err != nil {
		return nil, nil, err
	}
	results, err := x.saveImages(img, dirTemp, "ComfyUI"+x.object().tempSuffix)
	if err != nil {
		return nil, nil, err
	}
	return []any{}, newObj("images", results), nil
}

// runSaveImageWebsocket reports one progress step per image, each carrying
// the PNG as a preview (binary frames), and has no UI output.
func runSaveImageWebsocket(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("images")
	if err != nil {
		return nil, nil, err
	}
	for i, c := range img.px {
		w, h := x.capped(img.w, img.h)
		png := solidPNG(w, h, img.ch, c)
		if err := x.progress(i, len(img.px), &preview{data: png}); err != nil {
			return nil, nil, err
		}
		x.r.e.p.sim.log.streamed(x.r.item.id, x.id, "png", png)
	}
	return []any{}, nil, nil
}

func runCheckpointLoader(x *nodeRun) ([]any, *obj, error) {
	name := x.str("ckpt_name")
	if err := x.loadModel(name); err != nil {
		return nil, nil, err
	}
	return []any{
		opaqueVal{"MODEL", "<comfy.model_patcher.ModelPatcher object (" + name + ")>", name},
		opaqueVal{"CLIP", "<comfy.sd.CLIP object (" + name + ")>", name},
		opaqueVal{"VAE", "<comfy.sd.VAE object (" + name + ")>", name},
	}, nil, nil
}

func runCLIPTextEncode(x *nodeRun) ([]any, *obj, error) {
	return []any{opaqueVal{typ: "CONDITIONING", desc: "[[tensor(...), {'pooled_output': tensor(...)}]] (" + pyQuote(x.str("text")) + ")"}}, nil, nil
}

func runEmptyLatentImage(x *nodeRun) ([]any, *obj, error) {
	return []any{latentVal{w: x.int("width") / 8, h: x.int("height") / 8, batch: x.int("batch_size"), rgb: [4]uint8{0, 0, 0, 255}}}, nil, nil
}

// runKSampler reports steps progress updates; the result colour is a hash
// of everything that would change a real sample.
func runKSampler(x *nodeRun) ([]any, *obj, error) {
	lat, ok := x.in["latent_image"].(latentVal)
	if !ok {
		return nil, nil, x.notTensor("latent_image")
	}
	// A cached loader hands over a model that /free may have unloaded since:
	// sampling loads it again (load_models_gpu).
	if m, ok := x.in["model"].(opaqueVal); ok && m.ckpt != "" {
		if err := x.loadModel(m.ckpt); err != nil {
			return nil, nil, err
		}
	}
	steps := x.int("steps")
	if x.steps > 0 {
		steps = x.steps
	}
	h := fnv.New32a()
	for _, k := range []string{"seed", "noise_seed", "cfg", "sampler_name", "scheduler", "positive", "negative", "model"} {
		if v, ok := x.in[k]; ok {
			fmt.Fprint(h, k, "=", formatValue(v), ";")
		}
	}
	sum := h.Sum32()
	final := [4]uint8{uint8(sum >> 16), uint8(sum >> 8), uint8(sum), 255}
	for i := 0; i < steps; i++ {
		if err := x.sleep(x.stepDelay); err != nil {
			return nil, nil, err
		}
		if err := x.progress(i+1, steps, x.samplerPreview(lat, final, i+1, steps)); err != nil {
			return nil, nil, err
		}
	}
	lat.rgb = final
	return []any{lat}, nil, nil
}

// samplerPreview is the JPEG preview of a sampling step, or nil when
// previews are off: the latent's size (as latent2rgb gives), its colour
// going from grey to the final one.
func (x *nodeRun) samplerPreview(lat latentVal, final [4]uint8, step, steps int) *preview {
	if m := x.r.e.p.sim.opts.PreviewMethod; m == "" || m == "none" {
		return nil
	}
	var c [4]uint8
	for i := range 3 {
		c[i] = uint8(128 + (int(final[i])-128)*step/steps)
	}
	c[3] = 255
	data, err := solidJPEG(min(max(lat.w, 1), 512), min(max(lat.h, 1), 512), c)
	if err != nil {
		return nil
	}
	return &preview{jpeg: true, data: data}
}

func runVAEDecode(x *nodeRun) ([]any, *obj, error) {
	lat, ok := x.in["samples"].(latentVal)
	if !ok {
		return nil, nil, x.notTensor("samples")
	}
	return []any{solid(lat.w*8, lat.h*8, 3, lat.batch, lat.rgb)}, nil, nil
}

func runVAEEncode(x *nodeRun) ([]any, *obj, error) {
	img, err := x.image("pixels")
	if err != nil {
		return nil, nil, err
	}
	return []any{latentVal{w: img.w / 8, h: img.h / 8, batch: len(img.px), rgb: img.px[0]}}, nil, nil
}

// runGeneric executes a catalog class the simulator does not model: typed
// outputs pass through the first input of the same type, no UI.
func runGeneric(x *nodeRun) ([]any, *obj, error) {
	outs := make([]any, len(x.spec.outputs))
	for i, t := range x.spec.outputs {
		name, _ := t.(string)
		outs[i] = x.firstOfType(name)
	}
	return outs, nil, nil
}

func (x *nodeRun) firstOfType(typ string) any {
	for _, in := range x.spec.inputs {
		v := x.in[in.name]
		switch v.(type) {
		case imageVal:
			if typ == "IMAGE" {
				return v
			}
		case maskVal:
			if typ == "MASK" {
				return v
			}
		case latentVal:
			if typ == "LATENT" {
				return v
			}
		}
	}
	switch typ {
	case "IMAGE":
		return solid(64, 64, 3, 1, [4]uint8{128, 128, 128, 255})
	case "MASK":
		return maskVal{w: 64, h: 64, batch: 1}
	case "LATENT":
		return latentVal{w: 8, h: 8, batch: 1, rgb: [4]uint8{128, 128, 128, 255}}
	}
	return opaqueVal{typ: typ, desc: "<" + strings.ToLower(typ) + " object from " + x.spec.class + ">"}
}

// formatValue is ComfyUI's format_value: primitives as they are, the rest str().
func formatValue(v any) any {
	switch t := v.(type) {
	case nil, bool, string, float64, int, int64, intLit:
		return v
	case fmt.Stringer:
		return t.String()
	}
	return pyRepr(v)
}
