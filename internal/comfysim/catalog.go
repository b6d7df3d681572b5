package comfysim

import (
	_ "embed"
	"fmt"
	"sync"
)

// objectInfoJSON is the GET /object_info body a real ComfyUI v0.3.65 served
// when testdata/traces was recorded (re-encoded with json.dumps defaults: 378
// classes, 321490 bytes). Its combo lists of model and input files are empty
// because that server had none; the simulator fills them per instance.
//
//go:embed objectinfo_v0.3.65.json
var objectInfoJSON []byte

// inputSpec is one input of a node class, as INPUT_TYPES declares it.
type inputSpec struct {
	name     string
	category string // "required" or "optional"
	typ      any    // a type name (string) or a combo list ([]any)
	extra    *obj   // the options object; empty when the spec has none
}

// nodeSpec is what the validator and the executor need from a node class.
type nodeSpec struct {
	class      string
	inputs     []inputSpec       // required first, then optional, in declared order
	hidden     map[string]string // hidden input name -> kind (PROMPT, EXTRA_PNGINFO, UNIQUE_ID)
	hiddenKeys []string
	outputs    []any // RETURN_TYPES
	outputNode bool
	info       *obj // the object_info entry as served
	// validateArgs are the inputs the class's VALIDATE_INPUTS takes; when
	// set, those inputs skip the min/max/combo checks (ComfyUI execution.py).
	validateArgs []string
}

func (n *nodeSpec) input(name string) (inputSpec, bool) {
	for _, in := range n.inputs {
		if in.name == name {
			return in, true
		}
	}
	return inputSpec{}, false
}

func (n *nodeSpec) validates(name string) bool {
	for _, a := range n.validateArgs {
		if a == name {
			return true
		}
	}
	return false
}

// catalog is the parsed node catalog, shared read-only by every instance.
type catalog struct {
	order []string
	specs map[string]*nodeSpec
	root  *obj
}

var (
	baseCatalogOnce sync.Once
	baseCatalog     *catalog
)

// loadCatalog parses the embedded object_info once per process.
func loadCatalog() *catalog {
	baseCatalogOnce.Do(func() {
		c, err := parseCatalog(objectInfoJSON)
		if err != nil {
			panic(fmt.Sprintf("comfysim: embedded object_info: %v", err))
		}
		baseCatalog = c
	})
	return baseCatalog
}

// validateInputsArgs lists the VALIDATE_INPUTS signatures of the classes the
// simulator knows (nodes.py: LoadImage, LoadImageMask).
var validateInputsArgs = map[string][]string{
	"LoadImage":     {"image"},
	"LoadImageMask": {"image"},
}

func parseCatalog(b []byte) (*catalog, error) {
	v, err := parsePy(b)
	if err != nil {
		return nil, err
	}
	root, ok := v.(*obj)
	if !ok {
		return nil, fmt.Errorf("object_info is %s, not an object", pyTypeName(v))
	}
	c := &catalog{order: root.keys, specs: make(map[string]*nodeSpec, root.len()), root: root}
	for _, class := range root.keys {
		info, ok := root.at(class).(*obj)
		if !ok {
			return nil, fmt.Errorf("object_info[%q] is not an object", class)
		}
		c.specs[class] = parseSpec(class, info)
	}
	return c, nil
}

func parseSpec(class string, info *obj) *nodeSpec {
	n := &nodeSpec{class: class, info: info, hidden: map[string]string{}, validateArgs: validateInputsArgs[class]}
	in := info.sub("input")
	if in == nil {
		in = newObj()
	}
	for _, cat := range []string{"required", "optional"} {
		group := in.sub(cat)
		if group == nil {
			continue
		}
		for _, name := range group.keys {
			n.inputs = append(n.inputs, parseInput(name, cat, group.at(name)))
		}
	}
	if hidden := in.sub("hidden"); hidden != nil {
		for _, name := range hidden.keys {
			kind, _ := hidden.at(name).(string)
			n.hidden[name] = kind
			n.hiddenKeys = append(n.hiddenKeys, name)
		}
	}
	if outs, ok := info.at("output").([]any); ok {
		n.outputs = outs
	}
	n.outputNode, _ = info.at("output_node").(bool)
	return n
}

func parseInput(name, cat string, raw any) inputSpec {
	s := inputSpec{name: name, category: cat, extra: newObj()}
	arr, ok := raw.([]any)
	if !ok || len(arr) == 0 {
		s.typ = raw
		return s
	}
	s.typ = arr[0]
	if len(arr) > 1 {
		if ex, ok := arr[1].(*obj); ok {
			s.extra = ex
		}
	}
	return s
}

// config is the [type, options] pair ComfyUI reports as input_config.
func (s inputSpec) config() []any { return []any{s.typ, s.extra} }

// simCatalog is one instance's view of the catalog: the shared classes but
// those the instance lacks, plus the combo lists that depend on the
// instance (checkpoints, LoRAs, uploaded inputs).
type simCatalog struct {
	base    *catalog
	missing map[string]bool // classes the instance does not offer
	files   *fileStore

	// mu guards ckpts, loras, body, bodyAt and models.
	mu     sync.Mutex
	ckpts  []any
	loras  []any
	body   []byte // cached GET /object_info body
	bodyAt uint64 // files.inputVersion the body was built at
	models uint64 // bumped by setModels; the body is rebuilt after it
	built  uint64 // models the body was built at
}

func newSimCatalog(ckpts, loras, missing []string, files *fileStore) *simCatalog {
	c := &simCatalog{base: loadCatalog(), files: files, missing: map[string]bool{}}
	for _, m := range missing {
		c.missing[m] = true
	}
	c.setModels(ckpts, loras)
	return c
}

// setModels replaces the checkpoint and LoRA lists (nil keeps one).
func (c *simCatalog) setModels(ckpts, loras []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ckpts != nil {
		c.ckpts = stringsToAny(ckpts)
	}
	if loras != nil {
		c.loras = stringsToAny(loras)
	}
	if c.ckpts == nil {
		c.ckpts = []any{}
	}
	if c.loras == nil {
		c.loras = []any{}
	}
	c.models++
}

// checkpoints lists the checkpoint names the instance offers.
func (c *simCatalog) checkpoints() []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ckpts
}

// loraNames lists the LoRA names the instance offers.
func (c *simCatalog) loraNames() []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loras
}

func (c *simCatalog) spec(class string) (*nodeSpec, bool) {
	if c.missing[class] {
		return nil, false
	}
	s, ok := c.base.specs[class]
	return s, ok
}

// dynamicCombo returns the instance-specific list for a combo input whose
// recorded list depends on the server's files, or nil.
func (c *simCatalog) dynamicCombo(class, input string) []any {
	switch {
	case input == "ckpt_name":
		return c.checkpoints()
	case input == "lora_name":
		return c.loraNames()
	case (class == "LoadImage" || class == "LoadImageMask") && input == "image":
		return c.files.inputImages()
	}
	return nil
}

// combo returns the options of a combo input, or nil when it is not a combo.
func (c *simCatalog) combo(class string, in inputSpec) []any {
	list, ok := in.typ.([]any)
	if !ok {
		return nil
	}
	if d := c.dynamicCombo(class, in.name); d != nil {
		return d
	}
	return list
}

// objectInfo returns the encoded GET /object_info body.
func (c *simCatalog) objectInfo() []byte {
	version := c.files.inputVersion()
	c.mu.Lock()
	if c.body != nil && c.bodyAt == version && c.built == c.models {
		defer c.mu.Unlock()
		return c.body
	}
	models := c.models
	c.mu.Unlock()
	b := make([]byte, 0, len(objectInfoJSON)+1024)
	b = append(b, '{')
	first := true
	for _, class := range c.base.order {
		if c.missing[class] {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = appendPyString(b, class)
		b = append(b, ": "...)
		b = appendPy(b, c.classInfo(class))
	}
	b = append(b, '}')
	c.mu.Lock()
	defer c.mu.Unlock()
	c.body, c.bodyAt, c.built = b, version, models
	return b
}

// classInfo returns the object_info entry of a class with its dynamic combos filled.
func (c *simCatalog) classInfo(class string) *obj {
	spec := c.base.specs[class]
	info := spec.info
	for _, in := range spec.inputs {
		list := c.dynamicCombo(class, in.name)
		if list == nil || in.typ == nil {
			continue
		}
		if _, isCombo := in.typ.([]any); !isCombo {
			continue
		}
		info = withCombo(info, in, list)
	}
	return info
}

// withCombo copies info along the path input.<category>.<name>[0] and sets the list.
func withCombo(info *obj, in inputSpec, list []any) *obj {
	info = info.clone()
	inputs := info.sub("input").clone()
	group := inputs.sub(in.category).clone()
	spec := append([]any(nil), group.at(in.name).([]any)...)
	spec[0] = list
	group.set(in.name, spec)
	inputs.set(in.category, group)
	info.set("input", inputs)
	return info
}
