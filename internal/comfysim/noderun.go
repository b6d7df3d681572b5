package comfysim

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// nodeRun is one node's execution: its resolved inputs and the services a
// node function uses (delays, progress, files, model loading).
type nodeRun struct {
	r         *run
	id        string
	spec      *nodeSpec
	n         *gnode
	in        map[string]any
	steps     int
	stepDelay time.Duration
}

func (r *run) newNodeRun(n *gnode) *nodeRun {
	s := r.e.p.sim
	x := &nodeRun{r: r, id: n.id, spec: n.spec, n: n, in: map[string]any{}, steps: s.opts.Steps, stepDelay: s.opts.StepDelay}
	for _, name := range n.inputs.keys {
		v := n.inputs.at(name)
		if from, slot, ok := link(v); ok && r.g.nodes[from] != nil {
			if entry := r.e.cache[r.sigs[from]]; entry != nil {
				if slot < 0 {
					slot += len(entry.outputs)
				}
				if slot >= 0 && slot < len(entry.outputs) {
					x.in[name] = entry.outputs[slot]
				}
			}
			continue
		}
		if _, declared := n.spec.input(name); declared {
			x.in[name] = v
		}
	}
	return x
}

// formattedInputs is the current_inputs of an execution_error: every input
// in prompt order as a one-element list, then the V1 hidden inputs.
func (x *nodeRun) formattedInputs() *obj {
	out := newObj()
	for _, name := range x.n.inputs.keys {
		if v, ok := x.in[name]; ok {
			out.set(name, []any{formatValue(v)})
		}
	}
	if x.spec.info.has("api_node") { // V3 nodes get hidden inputs separately
		return out
	}
	for _, name := range x.spec.hiddenKeys {
		switch x.spec.hidden[name] {
		case "PROMPT":
			out.set(name, []any{formatValue(x.r.g.root)})
		case "EXTRA_PNGINFO":
			v, _ := x.r.item.extra.get("extra_pnginfo")
			out.set(name, []any{formatValue(v)})
		case "UNIQUE_ID":
			out.set(name, []any{x.id})
		}
	}
	return out
}

func (x *nodeRun) int(name string) int       { return goInt(x.in[name]) }
func (x *nodeRun) str(name string) string    { s, _ := x.in[name].(string); return s }
func (x *nodeRun) float(name string) float64 { f, _ := pyFloat(x.in[name]); return f }

func (x *nodeRun) image(name string) (imageVal, error) {
	img, ok := x.in[name].(imageVal)
	if !ok {
		return imageVal{}, x.notTensor(name)
	}
	return img, nil
}

// notTensor is what a node raises when a literal sits where a tensor belongs
// (validation lets literals through for socket types).
func (x *nodeRun) notTensor(name string) error {
	return &pyExc{typ: "AttributeError", msg: "'" + pyTypeName(x.in[name]) + "' object has no attribute 'shape'"}
}

// sleep waits d; only the instance going away cuts it short.
func (x *nodeRun) sleep(d time.Duration) error {
	return x.r.e.p.sleep(d)
}

// preview is an image a node reports with a progress step: a sampler's
// JPEG preview or SaveImageWebsocket's PNG.
type preview struct {
	jpeg bool
	data []byte
}

// progress is the ProgressBar hook (main.py hijack_progress): interrupt
// check, progress_state, a type-4 preview for a client that negotiated it,
// progress, and a type-1 preview otherwise. img may be nil.
func (x *nodeRun) progress(value, max int, img *preview) error {
	p := x.r.e.p
	if p.interrupted() {
		return errInterrupted
	}
	client := x.r.client
	x.r.progress.update(x.id, value, max)
	x.r.sendProgressState()
	withMeta := img != nil && p.supportsPreviewMetadata(client)
	if withMeta {
		p.sendBinary(4, previewWithMetadata(x.r.item.id, x.id, img), client)
	}
	p.sendSync("progress", newObj("value", int64(value), "max", int64(max), "prompt_id", x.r.item.id, "node", x.id), client)
	if img != nil && !withMeta {
		format := []byte{0, 0, 0, 2} // PNG
		if img.jpeg {
			format[3] = 1
		}
		p.sendBinary(1, append(format, img.data...), client)
	}
	return nil
}

func previewWithMetadata(promptID, nodeID string, img *preview) []byte {
	typ := "image/png"
	if img.jpeg {
		typ = "image/jpeg"
	}
	meta := encodePy(newObj("node_id", nodeID, "prompt_id", promptID, "display_node_id", nodeID,
		"parent_node_id", nil, "real_node_id", nodeID, "image_type", typ))
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(meta)+len(img.data)), uint32(len(meta)))
	return append(append(b, meta...), img.data...)
}

// loadModel is a checkpoint load: the model-load delay and a counted load
// whenever the checkpoint differs from the one the instance loaded last.
func (x *nodeRun) loadModel(name string) error {
	return x.r.e.p.sim.loadModel(x.r.e.p, name)
}

// object returns the node instance state kept across prompts.
func (x *nodeRun) object() *nodeObject {
	k := objectKey{x.id, x.spec.class}
	o := x.r.e.objects[k]
	if o == nil {
		letters := make([]byte, 5)
		for i := range letters {
			letters[i] = byte('a' + x.r.e.rng.IntN(26))
		}
		o = &nodeObject{tempSuffix: "_temp_" + string(letters)}
		x.r.e.objects[k] = o
	}
	return o
}

// capped applies the instance's MaxImageSide to a saved image.
func (x *nodeRun) capped(w, h int) (int, int) {
	m := x.r.e.p.sim.opts.MaxImageSide
	return max(1, min(w, m)), max(1, min(h, m))
}

const (
	fakeInputDir  = "/srv/comfy-data/input"
	fakeOutputDir = "/srv/comfy-data/output"
	fakeTempDir   = "/srv/comfy-data/temp"
)

var fakeDirs = map[string]string{dirInput: fakeInputDir, dirOutput: fakeOutputDir, dirTemp: fakeTempDir}

// loadImage reads an annotated input reference the way LoadImage opens it.
func (x *nodeRun) loadImage(ref string) (imageVal, int, error) {
	dir, rel := annotatedPath(ref, dirInput)
	full := fakeDirs[dir] + "/" + rel
	files := x.r.e.p.sim.files
	if isDir, ok := files.exists(dir, rel); ok && isDir {
		return imageVal{}, 0, &pyExc{typ: "IsADirectoryError", msg: "[Errno 21] Is a directory: " + pyQuote(full)}
	}
	f, ok := files.get(dir, rel)
	if !ok {
		return imageVal{}, 0, &pyExc{typ: "FileNotFoundError", msg: "[Errno 2] No such file or directory: " + pyQuote(full)}
	}
	d, err := decodeImage(f.data)
	if err != nil {
		return imageVal{}, 0, &pyExc{typ: "PIL.UnidentifiedImageError", msg: "cannot identify image file " + pyQuote(full)}
	}
	c := d.rgba
	c[3] = 255
	alpha := -1
	if d.hasAlpha {
		alpha = int(d.rgba[3])
	}
	return solid(d.w, d.h, 3, 1, c), alpha, nil
}

// saveImages is SaveImage.save_images: get_save_image_path naming, one PNG
// per batch item with the prompt in its metadata, the UI result list.
func (x *nodeRun) saveImages(img imageVal, dir, prefix string) ([]any, error) {
	if strings.Contains(prefix, "%") {
		prefix = computeVars(prefix, img.w, img.h)
	}
	norm := pyNormpath(prefix)
	sub, filename := pyDirname(norm), pyBasename(norm)
	if _, in := inside(sub); strings.HasPrefix(norm, "/") || (sub != "" && !in) {
		return nil, &pyExc{typ: "Exception", msg: saveOutsideMsg(fakeDirs[dir], sub)}
	}
	subKey := sub
	if subKey == "" {
		subKey = "."
	}
	s := x.r.e.p.sim
	counter := s.files.nextCounter(dir, subKey, filename)
	w, h := x.capped(img.w, img.h)
	texts := x.pngTexts()
	results := make([]any, 0, len(img.px))
	for i, c := range img.px {
		name := fmt.Sprintf("%s_%05d_.png", strings.ReplaceAll(filename, "%batch_num%", itoa(i)), counter)
		data := solidPNG(w, h, img.ch, c)
		if size := s.opts.OutputSize; size > 0 {
			data = paddedPNG(data, solidKey{w, h, img.ch, c}, size)
		}
		if texts != nil {
			data = withTextChunks(data, texts)
		}
		if err := s.files.put(dir, joinRel(subKey, name), data, time.Now()); err != nil {
			return nil, &pyExc{typ: "OSError", msg: err.Error()}
		}
		results = append(results, newObj("filename", name, "subfolder", sub, "type", dir))
		counter++
	}
	return results, nil
}

// pngTexts is the pnginfo SaveImage embeds, unless metadata is disabled.
func (x *nodeRun) pngTexts() [][2]string {
	if x.r.e.p.sim.opts.DisableMetadata {
		return nil
	}
	texts := [][2]string{{"prompt", string(x.r.g.encoded)}}
	if extra, ok := x.r.item.extra.at("extra_pnginfo").(*obj); ok {
		for _, k := range extra.keys {
			texts = append(texts, [2]string{k, string(encodePy(extra.at(k)))})
		}
	}
	return texts
}

func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

func saveOutsideMsg(base, sub string) string {
	full := pyNormpath(base + "/" + sub)
	return "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: " + full +
		"\n         output_dir: " + base + "\n         commonpath: " + commonPath(base, full)
}

func commonPath(a, b string) string {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	n := 0
	for n < len(as) && n < len(bs) && as[n] == bs[n] {
		n++
	}
	if n <= 1 {
		return "/"
	}
	return strings.Join(as[:n], "/")
}

// computeVars is folder_paths.compute_vars.
func computeVars(s string, w, h int) string {
	now := time.Now()
	r := strings.NewReplacer(
		"%width%", itoa(w), "%height%", itoa(h),
		"%year%", itoa(now.Year()), "%month%", fmt.Sprintf("%02d", int(now.Month())), "%day%", fmt.Sprintf("%02d", now.Day()),
		"%hour%", fmt.Sprintf("%02d", now.Hour()), "%minute%", fmt.Sprintf("%02d", now.Minute()), "%second%", fmt.Sprintf("%02d", now.Second()),
	)
	return r.Replace(s)
}

// pyNormpath is posixpath.normpath.
func pyNormpath(p string) string {
	if p == "" {
		return "."
	}
	lead := ""
	switch {
	case strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "///"):
		lead = "//"
	case strings.HasPrefix(p, "/"):
		lead = "/"
	}
	var out []string
	for _, c := range strings.Split(p, "/") {
		switch {
		case c == "" || c == ".":
		case c != "..":
			out = append(out, c)
		case lead == "" && (len(out) == 0 || out[len(out)-1] == ".."):
			out = append(out, c)
		case len(out) > 0:
			out = out[:len(out)-1]
		}
	}
	s := lead + strings.Join(out, "/")
	if s == "" {
		return "."
	}
	return s
}

// pyDirname is posixpath.dirname.
func pyDirname(p string) string {
	i := strings.LastIndexByte(p, '/') + 1
	head := p[:i]
	if head != "" && strings.Trim(head, "/") != "" {
		head = strings.TrimRight(head, "/")
	}
	return head
}

// pyBasename is posixpath.basename.
func pyBasename(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }
