package comfysim

import (
	"strconv"
	"strings"
)

// Prompt validation, ported from ComfyUI v0.3.65 execution.py
// (validate_prompt / validate_inputs) with its quirks: a missing link target
// raises KeyError outside the inner try, a node that is invalid only because
// of an upstream error carries no errors of its own, validated values are
// written back into the prompt (int("64") becomes 64 in /queue and
// /history), and dependent_outputs accumulates across outputs.

// errServer marks a request that makes the real server raise: the handler
// answers aiohttp's plain-text 500.
type errServer struct{ reason string }

func (e *errServer) Error() string { return "comfysim: server error: " + e.reason }

// verdict is validate_prompt's return value.
type verdict struct {
	ok         bool
	err        *obj // the "error" object of a 400
	outputs    []string
	nodeErrors *obj
}

type nodeResult struct {
	ok      bool
	reasons []any
}

type validator struct {
	cat       *simCatalog
	files     *fileStore
	prompt    *obj
	validated map[string]nodeResult
	order     []string // insertion order of validated
	visiting  map[string]bool
}

func promptErr(typ, msg, details string) *obj {
	return newObj("type", typ, "message", msg, "details", details, "extra_info", newObj())
}

// validatePrompt validates prompt (the "prompt" member of a POST /prompt).
func validatePrompt(cat *simCatalog, files *fileStore, prompt any, partial any, hasPartial bool) (verdict, error) {
	p, ok := prompt.(*obj)
	if !ok {
		return validateNonObject(prompt)
	}
	var outputs []string
	for _, id := range p.keys {
		node, err := promptNode(p.at(id))
		if err != nil {
			return verdict{}, err
		}
		if node == nil || !node.has("class_type") {
			return verdict{err: promptErr("invalid_prompt", "Cannot execute because a node is missing the class_type property.", "Node ID '#"+id+"'"), nodeErrors: newObj()}, nil
		}
		class := node.at("class_type")
		if !hashable(class) {
			return verdict{}, &errServer{"unhashable class_type"}
		}
		name, _ := class.(string)
		spec, known := cat.spec(name)
		if !known {
			return verdict{err: promptErr("invalid_prompt", "Cannot execute because node "+pyStr(class)+" does not exist.", "Node ID '#"+id+"'"), nodeErrors: newObj()}, nil
		}
		if spec.outputNode {
			in, err := inPartial(id, partial, hasPartial)
			if err != nil {
				return verdict{}, err
			}
			if in {
				outputs = append(outputs, id)
			}
		}
	}
	if len(outputs) == 0 {
		return verdict{err: promptErr("prompt_no_outputs", "Prompt has no outputs", ""), nodeErrors: newObj()}, nil
	}
	v := &validator{cat: cat, files: files, prompt: p, validated: map[string]nodeResult{}, visiting: map[string]bool{}}
	return v.validateOutputs(outputs), nil
}

// validateNonObject handles a prompt that is not a dict: iterating it works
// for lists and strings, and indexing it with the items raises.
func validateNonObject(prompt any) (verdict, error) {
	empty := false
	switch t := prompt.(type) {
	case []any:
		empty = len(t) == 0
	case string:
		empty = t == ""
	}
	if !empty {
		return verdict{}, &errServer{"prompt is not an object"}
	}
	return verdict{err: promptErr("prompt_no_outputs", "Prompt has no outputs", ""), nodeErrors: newObj()}, nil
}

// promptNode returns the node as a dict; a string or list without a
// "class_type" member counts as a node missing class_type (nil), anything
// else raises in Python's `in` test.
func promptNode(v any) (*obj, error) {
	switch t := v.(type) {
	case *obj:
		return t, nil
	case string:
		if strings.Contains(t, "class_type") {
			return nil, &errServer{"string indices must be integers"}
		}
		return nil, nil
	case []any:
		for _, e := range t {
			if e == "class_type" {
				return nil, &errServer{"list indices must be integers"}
			}
		}
		return nil, nil
	}
	return nil, &errServer{"argument of type '" + pyTypeName(v) + "' is not iterable"}
}

func hashable(v any) bool {
	switch v.(type) {
	case []any, *obj:
		return false
	}
	return true
}

// inPartial is `partial_execution_list is None or x in partial_execution_list`.
func inPartial(id string, partial any, has bool) (bool, error) {
	if !has || partial == nil {
		return true, nil
	}
	switch t := partial.(type) {
	case []any:
		for _, e := range t {
			if e == id {
				return true, nil
			}
		}
		return false, nil
	case string:
		return strings.Contains(t, id), nil
	case *obj:
		return t.has(id), nil
	}
	return false, &errServer{"partial_execution_targets is not iterable"}
}

func (v *validator) validateOutputs(outputs []string) verdict {
	var good []string
	var outputErrs []any // reasons attached to failing output nodes themselves
	nodeErrors := newObj()
	for _, o := range outputs {
		ok, reasons := v.validateOutput(o)
		if ok {
			good = append(good, o)
			continue
		}
		outputErrs = append(outputErrs, reasons...)
		v.collectNodeErrors(o, nodeErrors)
	}
	if len(good) == 0 {
		var lines []string
		for _, r := range outputErrs {
			e := r.(*obj)
			msg, _ := e.str("message")
			lines = append(lines, msg+": "+pyStr(e.at("details")))
		}
		return verdict{err: promptErr("prompt_outputs_failed_validation", "Prompt outputs failed validation", strings.Join(lines, "\n")), nodeErrors: nodeErrors}
	}
	return verdict{ok: true, outputs: good, nodeErrors: nodeErrors}
}

func (v *validator) validateOutput(o string) (bool, []any) {
	res, exc := v.validateInputs(o)
	if exc == nil {
		return res.ok, res.reasons
	}
	exc.tb = append([]string{tbFrame(1016, "validate_prompt", "m = await validate_inputs(prompt_id, prompt, o, validated)", "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^")}, exc.tb...)
	reasons := []any{newObj(
		"type", "exception_during_validation",
		"message", "Exception when validating node",
		"details", exc.msg,
		"extra_info", newObj("exception_type", exc.typ, "traceback", stringsToAny(exc.tb)),
	)}
	v.record(o, nodeResult{reasons: reasons})
	return false, reasons
}

// collectNodeErrors adds every validated node with errors of its own to
// nodeErrors and appends o to its dependent_outputs (over all nodes validated
// so far, as ComfyUI does).
func (v *validator) collectNodeErrors(o string, nodeErrors *obj) {
	for _, id := range v.order {
		r := v.validated[id]
		if r.ok || len(r.reasons) == 0 {
			continue
		}
		entry := nodeErrors.sub(id)
		if entry == nil {
			class := v.prompt.sub(id).at("class_type")
			entry = newObj("errors", r.reasons, "dependent_outputs", []any{}, "class_type", class)
			nodeErrors.set(id, entry)
		}
		entry.set("dependent_outputs", append(entry.at("dependent_outputs").([]any), o))
	}
}

func (v *validator) record(id string, r nodeResult) {
	if _, ok := v.validated[id]; !ok {
		v.order = append(v.order, id)
	}
	v.validated[id] = r
}

// validateInputs is validate_inputs for one node; a *pyExc is an exception
// escaping it.
func (v *validator) validateInputs(id string) (nodeResult, *pyExc) {
	if r, ok := v.validated[id]; ok {
		return r, nil
	}
	if v.visiting[id] {
		// ComfyUI v0.3.65 has no cycle check: the recursion runs out of stack.
		return nodeResult{}, &pyExc{typ: "RecursionError", msg: "maximum recursion depth exceeded"}
	}
	v.visiting[id] = true
	defer delete(v.visiting, id)

	node := v.prompt.sub(id)
	inputsV, ok := node.get("inputs")
	if !ok {
		return nodeResult{}, &pyExc{typ: "KeyError", msg: "'inputs'", tb: []string{tbFrame(762, "validate_inputs", "inputs = prompt[unique_id]['inputs']", "             ~~~~~~~~~~~~~~~~~~^^^^^^^^^^")}}
	}
	inputs, ok := inputsV.(*obj)
	if !ok {
		return nodeResult{}, &pyExc{typ: "TypeError", msg: pyTypeName(inputsV) + " indices must be integers or slices, not str"}
	}
	spec, _ := v.cat.spec(node.at("class_type").(string))
	var errs []any
	valid := true
	for _, in := range spec.inputs {
		val, present := inputs.get(in.name)
		if !present {
			if in.category == "required" {
				errs = append(errs, newObj("type", "required_input_missing", "message", "Required input is missing", "details", in.name, "extra_info", newObj("input_name", in.name)))
			}
			continue
		}
		if link, isLink := val.([]any); isLink {
			e, upstreamOK, exc := v.validateLink(in, link)
			if exc != nil {
				return nodeResult{}, exc
			}
			valid = valid && upstreamOK
			if e != nil {
				errs = append(errs, e)
			}
			continue
		}
		if e := v.validateValue(spec, in, inputs); e != nil {
			errs = append(errs, e)
		}
	}
	custom, exc := v.customValidation(spec, inputs)
	if exc != nil {
		return nodeResult{}, exc
	}
	errs = append(errs, custom...)
	r := nodeResult{ok: valid && len(errs) == 0, reasons: errs}
	if errs == nil {
		r.reasons = []any{}
	}
	v.record(id, r)
	return r, nil
}

// validateLink checks a [node_id, slot] input. It returns an error entry for
// this node, whether the upstream node validated, or an escaping exception.
func (v *validator) validateLink(in inputSpec, link []any) (*obj, bool, *pyExc) {
	if len(link) != 2 {
		return newObj("type", "bad_linked_input", "message", "Bad linked input, must be a length-2 list of [node_id, slot_index]", "details", in.name,
			"extra_info", newObj("input_name", in.name, "input_config", in.config(), "received_value", link)), true, nil
	}
	received, exc := v.linkedType(link)
	if exc != nil {
		return nil, true, exc
	}
	if !typesCompatible(received, in.typ) {
		details := in.name + ", received_type(" + pyStr(received) + ") mismatch input_type(" + pyStr(in.typ) + ")"
		return newObj("type", "return_type_mismatch", "message", "Return type mismatch between linked nodes", "details", details,
			"extra_info", newObj("input_name", in.name, "input_config", in.config(), "received_type", received, "linked_node", link)), true, nil
	}
	oid := link[0].(string) // linkedType proved it names a node
	r, exc := v.validateInputs(oid)
	if exc == nil {
		return nil, r.ok, nil
	}
	exc.tb = append([]string{tbFrame(813, "validate_inputs", "r = await validate_inputs(prompt_id, prompt, o_id, validated)", "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^")}, exc.tb...)
	v.record(oid, nodeResult{reasons: []any{newObj(
		"type", "exception_during_inner_validation",
		"message", "Exception when validating inner node",
		"details", exc.msg,
		"extra_info", newObj("input_name", in.name, "input_config", in.config(), "exception_message", exc.msg,
			"exception_type", exc.typ, "traceback", stringsToAny(exc.tb), "linked_node", link),
	)}})
	return nil, false, nil
}

// linkedType is `prompt[o_id]['class_type']` and `RETURN_TYPES[slot]`.
func (v *validator) linkedType(link []any) (any, *pyExc) {
	if !hashable(link[0]) {
		return nil, &pyExc{typ: "TypeError", msg: "unhashable type: '" + pyTypeName(link[0]) + "'"}
	}
	oid, _ := link[0].(string)
	other := v.prompt.sub(oid)
	if _, isStr := link[0].(string); !isStr || other == nil {
		return nil, &pyExc{typ: "KeyError", msg: pyRepr(link[0]), tb: []string{tbFrame(794, "validate_inputs", "o_class_type = prompt[o_id]['class_type']", "                   ~~~~~~^^^^^^")}}
	}
	spec, _ := v.cat.spec(other.at("class_type").(string))
	slotFrame := tbFrame(796, "validate_inputs", "received_type = r[val[1]]", "                    ~^^^^^^^^")
	slot, isInt := link[1].(int64)
	if _, huge := link[1].(intLit); huge {
		return nil, &pyExc{typ: "IndexError", msg: "cannot fit 'int' into an index-sized integer", tb: []string{slotFrame}}
	}
	if !isInt {
		if _, ok := link[1].(bool); !ok {
			return nil, &pyExc{typ: "TypeError", msg: "tuple indices must be integers or slices, not " + pyTypeName(link[1]), tb: []string{slotFrame}}
		}
		slot = int64(goInt(link[1]))
	}
	n := int64(len(spec.outputs))
	if slot < 0 {
		slot += n
	}
	if slot < 0 || slot >= n {
		return nil, &pyExc{typ: "IndexError", msg: "tuple index out of range", tb: []string{slotFrame}}
	}
	return spec.outputs[slot], nil
}

// typesCompatible is validate_node_input (non-strict).
func typesCompatible(received, want any) bool {
	if pyEqual(received, want) {
		return true
	}
	r, ok1 := received.(string)
	w, ok2 := want.(string)
	if !ok1 || !ok2 {
		return false
	}
	rs, ws := splitTypes(r), splitTypes(w)
	if rs["*"] || ws["*"] {
		return true
	}
	for t := range rs {
		if ws[t] {
			return true
		}
	}
	return false
}

func splitTypes(s string) map[string]bool {
	m := map[string]bool{}
	for _, t := range strings.Split(s, ",") {
		m[strings.TrimSpace(t)] = true
	}
	return m
}

// validateValue checks a widget value: unwrap __value__, convert by type,
// then min, max and combo membership. Converted values are written back.
func (v *validator) validateValue(spec *nodeSpec, in inputSpec, inputs *obj) *obj {
	val := inputs.at(in.name)
	if d, ok := val.(*obj); ok && d.has("__value__") {
		val = d.at("__value__")
		inputs.set(in.name, val)
	}
	converted, exc := convertWidget(in.typ, val)
	if exc != nil {
		typeName, _ := in.typ.(string)
		return newObj("type", "invalid_input_type", "message", "Failed to convert an input value to a "+typeName+" value",
			"details", in.name+", "+pyStr(val)+", "+exc.msg,
			"extra_info", newObj("input_name", in.name, "input_config", in.config(), "received_value", val, "exception_message", exc.msg))
	}
	val = converted
	inputs.set(in.name, val)
	if spec.validates(in.name) {
		return nil
	}
	if lo, ok := in.extra.get("min"); ok && pyLess(val, lo) {
		return rangeErr("value_smaller_than_min", "Value "+pyStr(val)+" smaller than min of "+pyStr(lo), in, val)
	}
	if hi, ok := in.extra.get("max"); ok && pyLess(hi, val) {
		return rangeErr("value_bigger_than_max", "Value "+pyStr(val)+" bigger than max of "+pyStr(hi), in, val)
	}
	options := v.cat.combo(spec.class, in)
	if options == nil || containsPy(options, val) {
		return nil
	}
	var config any
	listInfo := pyRepr(options)
	if len(options) > 20 {
		config, listInfo = nil, "(list of length "+itoa(len(options))+")"
	} else {
		config = []any{options, in.extra}
	}
	return newObj("type", "value_not_in_list", "message", "Value not in list", "details", in.name+": '"+pyStr(val)+"' not in "+listInfo,
		"extra_info", newObj("input_name", in.name, "input_config", config, "received_value", val))
}

func rangeErr(typ, msg string, in inputSpec, val any) *obj {
	return newObj("type", typ, "message", msg, "details", in.name,
		"extra_info", newObj("input_name", in.name, "input_config", in.config(), "received_value", val))
}

func containsPy(list []any, v any) bool {
	for _, e := range list {
		if pyEqual(e, v) {
			return true
		}
	}
	return false
}

// convertWidget applies int()/float()/str()/bool() for the four primitive
// types; other types (combos, sockets given a literal) pass unchanged.
func convertWidget(typ any, val any) (any, *pyExc) {
	switch typ {
	case "INT":
		return pyInt(val)
	case "FLOAT":
		f, exc := pyFloat(val)
		if exc != nil {
			return nil, exc
		}
		return f, nil
	case "STRING":
		return pyStr(val), nil
	case "BOOLEAN":
		return pyTruthy(val), nil
	}
	return val, nil
}

// customValidation runs the VALIDATE_INPUTS of the classes that have one.
func (v *validator) customValidation(spec *nodeSpec, inputs *obj) ([]any, *pyExc) {
	if len(spec.validateArgs) == 0 {
		return nil, nil
	}
	for _, arg := range spec.validateArgs {
		val, ok := inputs.get(arg)
		if _, isLink := val.([]any); !ok || isLink {
			// get_input_data skips links at validation time, so the call lacks the argument.
			return nil, &pyExc{typ: "TypeError", msg: spec.class + ".VALIDATE_INPUTS() missing 1 required positional argument: '" + arg + "'"}
		}
	}
	image := inputs.at("image")
	name, ok := image.(string)
	if !ok {
		return nil, &pyExc{typ: "AttributeError", msg: "'" + pyTypeName(image) + "' object has no attribute 'endswith'"}
	}
	dir, rel := annotatedPath(name, dirInput)
	if _, exists := v.files.exists(dir, rel); exists {
		return nil, nil
	}
	return []any{newObj("type", "custom_validation_failed", "message", "Custom validation failed for node",
		"details", "image - Invalid image file: "+name, "extra_info", newObj("input_name", "image"))}, nil
}

// annotatedPath splits "name [output]" style references (folder_paths.annotated_filepath).
func annotatedPath(name, defaultDir string) (dir, rel string) {
	for _, d := range []string{dirOutput, dirInput, dirTemp} {
		if suffix := "[" + d + "]"; strings.HasSuffix(name, suffix) {
			return d, name[:max(0, len(name)-len(suffix)-1)]
		}
	}
	return defaultDir, name
}

// tbFrame formats one traceback.format_tb entry of ComfyUI's execution.py.
func tbFrame(line int, fn, code, carets string) string {
	return "  File \"/srv/ComfyUI/execution.py\", line " + itoa(line) + ", in " + fn + "\n    " + code + "\n" + carets + "\n"
}

func stringsToAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
