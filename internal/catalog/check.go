package catalog

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Node is one node of a prompt to check.
type Node struct {
	ClassType string
	// Title is _meta.title, "" if none.
	Title  string
	Inputs map[string]json.RawMessage
}

// Param is one resolved params entry: Value overrides the node's input.
type Param struct {
	// Key is the params key as given ("KSampler.steps").
	Key    string
	NodeID string
	Input  string
	Value  json.RawMessage
	// File marks a {"fileId"} value: the instance's file name is known only
	// at dispatch, so the value is not checked.
	File bool
}

// Request is a prompt to check: the workflow as submitted, its params and
// the labels the task requires.
type Request struct {
	Prompt   map[string]Node
	Params   []Param
	Requires map[string]string
}

// Verdict is the outcome of Check.
type Verdict struct {
	// Checked is false when no instance matching Requires has a known
	// catalogue: nothing but the labels was checked, and the instance
	// validates the prompt at dispatch.
	Checked bool
	// Hashes are the catalogues that can run the prompt, in index order:
	// they offer every class, every params input, and validate every output
	// that validates anywhere.
	Hashes []string
	// Instances are the members matching Requires whose catalogue is in Hashes.
	Instances []string
	// Unknown are the members matching Requires whose catalogue is not known
	// yet: they may or may not run the prompt.
	Unknown []string
	// Problem is why the prompt cannot run on the fleet; nil when it can.
	Problem *Problem
}

// maxDependentWalks bounds how many failed outputs get their
// dependent_outputs computed (each costs a walk of the graph).
const maxDependentWalks = 64

// maxReportedParams bounds the unknown params inputs a problem reports
// (node_errors and details): a request may name many, the answer stays small.
const maxReportedParams = 32

// maxCatalogProblems bounds the catalogues a ProblemNoCapableInstance lists.
const maxCatalogProblems = 16

// Check validates a prompt against the catalogues of the members whose
// labels match req.Requires, as ComfyUI's validate_prompt would on an
// instance offering everything any of them offers: every class_type must be
// offered, every params input declared by its node (or present in the
// workflow), and at least one output must validate (required inputs
// present, combo values offered, numbers within bounds; only nodes an
// output depends on are checked, as in ComfyUI). It then narrows the
// catalogues to those that can run the whole prompt. Links are followed but
// not type-checked. The cost is linear in the size of the prompt (times the
// number of distinct specs of an input, usually one).
func (ix *Index) Check(req *Request) *Verdict {
	v := &Verdict{}
	var allowed set
	var matched []Member
	for _, m := range ix.members {
		if !Matches(m.Labels, req.Requires) {
			continue
		}
		matched = append(matched, m)
		if n, ok := ix.byHash[m.Hash]; ok && m.Catalog != nil {
			allowed = allowed.with(n)
		} else {
			v.Unknown = append(v.Unknown, m.InstanceID)
		}
	}
	if len(req.Requires) > 0 && len(matched) == 0 {
		v.Problem = &Problem{Field: "requires", Type: ProblemNoMatchingLabels,
			Message: "No configured instance has the labels " + FormatLabels(req.Requires)}
		return v
	}
	if allowed.empty() {
		return v
	}
	v.Checked = true
	c := newChecker(ix, req, allowed)
	full := c.run()
	v.Problem = c.problem(full, matched)
	if v.Problem != nil {
		return v
	}
	for _, n := range full.members() {
		v.Hashes = append(v.Hashes, ix.hashes[n])
	}
	for _, m := range matched {
		if n, ok := ix.byHash[m.Hash]; ok && m.Catalog != nil && full.has(n) {
			v.Instances = append(v.Instances, m.InstanceID)
		}
	}
	return v
}

// checker is one Check.
type checker struct {
	ix      *Index
	req     *Request
	allowed set
	ids     []string
	params  map[string]map[string]*Param // node id -> input -> param
	results map[string]*nodeResult
	// union holds the errors that hold on every catalogue offering the
	// node's class: what ComfyUI on the union of the fleet would report.
	union map[string][]InputError
	// fails are the errors of some catalogues, for ProblemNoCapableInstance.
	fails []failure

	unknownClass []string // node ids whose class no catalogue offers
	badParams    []string // params keys naming undeclared inputs
	outputs      []string // node ids that are output nodes somewhere
	valid        []string // outputs that validate on some catalogue
}

// nodeResult is a node's validation: ok are the catalogues where it and
// everything upstream validate.
type nodeResult struct {
	ok      set
	unionOK bool
	done    bool
	links   []string
}

type failure struct {
	node string
	cats set
	err  InputError
}

func newChecker(ix *Index, req *Request, allowed set) *checker {
	c := &checker{ix: ix, req: req, allowed: allowed, params: map[string]map[string]*Param{},
		results: map[string]*nodeResult{}, union: map[string][]InputError{}, ids: slices.Sorted(maps.Keys(req.Prompt))}
	for i := range req.Params {
		p := &req.Params[i]
		if c.params[p.NodeID] == nil {
			c.params[p.NodeID] = map[string]*Param{}
		}
		c.params[p.NodeID][p.Input] = p
	}
	return c
}

// run validates everything and returns the catalogues that can run the
// whole prompt.
func (c *checker) run() set {
	full := c.checkClasses().and(c.checkParams())
	var anyOK set
	for _, o := range c.outputs {
		r := c.visit(o)
		if okHere := r.ok.and(c.outputIn(o)); !okHere.empty() {
			c.valid = append(c.valid, o)
			anyOK = anyOK.or(okHere)
		}
	}
	full = full.and(anyOK)
	for _, o := range c.valid {
		// Where o is an output, it must validate.
		full = full.minus(c.outputIn(o).minus(c.results[o].ok))
	}
	return full
}

func (c *checker) class(id string) (*classEntry, set) {
	ce := c.ix.classes[c.req.Prompt[id].ClassType]
	if ce == nil {
		return nil, nil
	}
	return ce, ce.has.and(c.allowed)
}

func (c *checker) outputIn(id string) set {
	ce, has := c.class(id)
	if ce == nil {
		return nil
	}
	return ce.output.and(has)
}

// checkClasses returns the catalogues offering every class of the prompt
// and finds the output nodes.
func (c *checker) checkClasses() set {
	all := c.allowed
	for _, id := range c.ids {
		n := c.req.Prompt[id]
		_, has := c.class(id)
		if has.empty() {
			c.unknownClass = append(c.unknownClass, id)
			c.union[id] = append(c.union[id], missingNodeType(id, &n))
			continue
		}
		if lacking := c.allowed.minus(has); !lacking.empty() {
			c.fail(id, lacking, missingNodeType(id, &n))
		}
		all = all.and(has)
		if !c.outputIn(id).empty() {
			c.outputs = append(c.outputs, id)
		}
	}
	return all
}

// checkParams returns the catalogues whose classes declare every params
// input that the workflow does not already have.
func (c *checker) checkParams() set {
	all := c.allowed
	for i := range c.req.Params {
		p := &c.req.Params[i]
		n, ok := c.req.Prompt[p.NodeID]
		ce, has := c.class(p.NodeID)
		if !ok || has.empty() {
			continue
		}
		if _, inWorkflow := n.Inputs[p.Input]; inWorkflow {
			continue
		}
		var decl set
		if ie := ce.inputs[p.Input]; ie != nil {
			decl = ie.declared.and(has)
		}
		if decl.empty() {
			c.badParams = append(c.badParams, p.Key)
			if len(c.badParams) <= maxReportedParams {
				c.union[p.NodeID] = append(c.union[p.NodeID], unknownInput(p, n.ClassType, ce))
			}
			continue
		}
		err := unknownInput(p, n.ClassType, ce)
		if lacking := has.minus(decl); !lacking.empty() {
			c.fail(p.NodeID, lacking, err)
			all = all.minus(lacking)
		}
	}
	return all
}

func (c *checker) fail(id string, cats set, err InputError) {
	c.fails = append(c.fails, failure{node: id, cats: cats, err: err})
}

// value is the input's effective value: the param's, else the workflow's.
func (c *checker) value(id, name string) (raw json.RawMessage, file, present bool) {
	if p := c.params[id][name]; p != nil {
		return p.Value, p.File, true
	}
	raw, present = c.req.Prompt[id].Inputs[name]
	return raw, false, present
}

// visit validates a node and, first, the nodes it links to (memoised, so
// each node is validated once).
func (c *checker) visit(id string) *nodeResult {
	if r := c.results[id]; r != nil {
		if !r.done { // a cycle: leave it to the instance
			return &nodeResult{ok: c.allowed, unionOK: true, done: true}
		}
		return r
	}
	r := &nodeResult{}
	c.results[id] = r
	ce, has := c.class(id)
	if has.empty() {
		r.done = true
		return r
	}
	own, up, unionOK := has, has, true
	for _, name := range ce.order {
		ie := ce.inputs[name]
		decl := ie.declared.and(has)
		if decl.empty() {
			continue
		}
		raw, file, present := c.value(id, name)
		if !present {
			req := ie.required.and(has)
			if req.empty() {
				continue
			}
			err := requiredInputMissing(name)
			own = own.minus(req)
			c.fail(id, req, err)
			if has.minus(req).empty() {
				c.union[id] = append(c.union[id], err)
				unionOK = false
			}
			continue
		}
		val, err := decodeValue(raw)
		if file || err != nil {
			continue
		}
		if d, ok := val.(map[string]any); ok {
			if inner, ok := d["__value__"]; ok {
				val = inner
			}
		}
		if from, ok := c.link(val); ok {
			ur := c.visit(from)
			r.links = append(r.links, from)
			up, unionOK = up.and(ur.ok), unionOK && ur.unionOK
			continue
		}
		if _, isList := val.([]any); isList {
			continue
		}
		bad, unionErr := c.checkValue(id, ie, decl, val)
		own = own.minus(bad)
		if unionErr != nil {
			c.union[id] = append(c.union[id], *unionErr)
			unionOK = false
		}
	}
	r.ok, r.unionOK, r.done = own.and(up), unionOK, true
	return r
}

// link reports whether val is a link [node id, slot] to a node of the prompt.
func (c *checker) link(val any) (string, bool) {
	arr, ok := val.([]any)
	if !ok || len(arr) != 2 {
		return "", false
	}
	from, ok := arr[0].(string)
	if _, exists := c.req.Prompt[from]; !ok || !exists {
		return "", false
	}
	return from, true
}

// checkValue checks a widget value against each spec of the input. It
// returns the catalogues that reject it and, when all of decl reject it,
// the error ComfyUI on the union would give.
func (c *checker) checkValue(id string, ie *inputEntry, decl set, val any) (set, *InputError) {
	var bad set
	var first *InputError
	var union []any
	seen := map[string]bool{}
	rejectedAll := true
	for _, v := range ie.variants {
		cats := v.cats.and(decl)
		if cats.empty() {
			continue
		}
		err := v.check(val)
		if err == nil {
			rejectedAll = false
			continue
		}
		bad = bad.or(cats)
		c.fail(id, cats, *err)
		if first == nil {
			first = err
		}
		for _, o := range v.in.Options {
			if k, _ := optionKey(o); !seen[k] {
				seen[k] = true
				union = append(union, o)
			}
		}
	}
	if !rejectedAll || first == nil {
		return bad, nil
	}
	if first.Type == ErrValueNotInList {
		e := notInList(first.inputName(), val, union)
		return bad, &e
	}
	return bad, first
}

// check validates a widget value against one spec; nil when it passes.
func (v *variant) check(val any) *InputError {
	in := v.in
	switch in.Type {
	case TypeCombo:
		if v.options == nil {
			return nil
		}
		if k, ok := optionKey(val); ok && v.options[k] {
			return nil
		}
		e := notInList(in.Name, val, in.Options)
		return &e
	case TypeInt, TypeFloat:
		return checkRange(in, val)
	}
	return nil
}

// checkRange is ComfyUI's min and max check, on the value converted with
// int() or float(). Values that do not convert are left to the instance.
func checkRange(in *Input, val any) *InputError {
	f, ok := number(in.Type, val)
	if !ok {
		return nil
	}
	shown := pyNumber(in.Type, f)
	if lo, err := in.Min.Float64(); in.Min != "" && err == nil && f < lo {
		e := outOfRange(ErrValueSmallerThanMin, "Value "+shown+" smaller than min of "+in.Min.String(), in, converted(in.Type, f))
		return &e
	}
	if hi, err := in.Max.Float64(); in.Max != "" && err == nil && f > hi {
		e := outOfRange(ErrValueBiggerThanMax, "Value "+shown+" bigger than max of "+in.Max.String(), in, converted(in.Type, f))
		return &e
	}
	return nil
}

// number converts a JSON value as int() (truncating) or float() would.
func number(typ string, val any) (float64, bool) {
	var f float64
	switch t := val.(type) {
	case json.Number:
		x, err := t.Float64()
		if err != nil {
			return 0, false
		}
		f = x
	case string:
		s := strings.TrimSpace(t)
		if typ == TypeInt {
			i, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, false
			}
			return float64(i), true
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, false
		}
		f = x
	case bool:
		if t {
			f = 1
		}
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	if typ == TypeInt {
		f = math.Trunc(f)
	}
	return f, true
}

func pyNumber(typ string, f float64) string {
	if typ == TypeInt {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return pyFloat(f)
}

func converted(typ string, f float64) json.Number { return json.Number(pyNumber(typ, f)) }

// inputName reads input_name back from an error's extra_info.
func (e *InputError) inputName() string {
	var x struct {
		InputName string `json:"input_name"`
	}
	_ = json.Unmarshal(e.ExtraInfo, &x)
	return x.InputName
}
