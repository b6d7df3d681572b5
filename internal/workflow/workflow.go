// Package workflow checks ComfyUI API-format prompts and applies the
// contract's params to them: "<nodeId>.<input>" or "<node title>.<input>"
// keys, with {"fileId": ...} values standing for uploaded files. Since an
// instance's folders are shared by every task run there, it also checks
// that a prompt loads no file it did not bring (CheckFileReferences) and
// moves its outputs under a folder of the task's own (ApplyOptions.OutputDir).
package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Error is a problem with a workflow or its params; Field names the part
// (e.g. "workflow.3.class_type" or "params.KSampler.seed").
type Error struct {
	Field   string
	Message string
	// kind, when set, is a sentinel the error matches with errors.Is.
	kind error
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

// Unwrap returns the sentinel the error stands for, if any
// (ErrTooManyNodes, ErrFileReference).
func (e *Error) Unwrap() error { return e.kind }

// ErrTooManyNodes is matched (errors.Is) by the *Error of a workflow with
// more nodes than Limits.MaxNodes.
var ErrTooManyNodes = errors.New("workflow: too many nodes")

// Limits bound the work of parsing a workflow; a zero field means no bound.
type Limits struct {
	// MaxNodes is the most nodes a workflow may have.
	MaxNodes int
}

// checkEvery is how many steps of a loop over nodes or params pass between
// two looks at the context, so a request whose client left stops soon
// without paying for a look at every step.
const checkEvery = 256

// stopped returns ctx's error every checkEvery steps once ctx is done.
func stopped(ctx context.Context, step int) error {
	if step%checkEvery != 0 {
		return nil
	}
	return ctx.Err()
}

// Node is one node of an API-format prompt.
type Node struct {
	ClassType string                     `json:"class_type"`
	Inputs    map[string]json.RawMessage `json:"inputs"`
	Meta      *struct {
		Title string `json:"title"`
	} `json:"_meta,omitempty"`
	// raw keeps every field of the node as sent, so Apply changes inputs only.
	raw map[string]json.RawMessage
}

// Prompt is an API-format prompt: node id -> node.
type Prompt map[string]Node

// Parse checks that raw is an API-format prompt and decodes it. A UI-format
// workflow (with a "nodes" array) gets guidance to export the API format.
// It is ParseContext without a bound.
func Parse(raw json.RawMessage) (Prompt, error) {
	return ParseContext(context.Background(), raw, Limits{})
}

// ParseContext is Parse within lim, stopping with ctx's error when ctx ends.
// A workflow of more than lim.MaxNodes nodes is an *Error matching
// ErrTooManyNodes, found before any node is decoded.
func ParseContext(ctx context.Context, raw json.RawMessage, lim Limits) (Prompt, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, &Error{Field: "workflow", Message: "is required: a ComfyUI API-format prompt (node id -> {class_type, inputs})"}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, &Error{Field: "workflow", Message: "must be a JSON object of node id -> {class_type, inputs}"}
	}
	if nodes, ok := top["nodes"]; ok && bytes.HasPrefix(bytes.TrimSpace(nodes), []byte("[")) {
		return nil, &Error{Field: "workflow", Message: `is in the UI format (it has a "nodes" array); export it from ComfyUI with "Save (API Format)" (enable Dev mode in the settings if the menu item is missing)`}
	}
	if len(top) == 0 {
		return nil, &Error{Field: "workflow", Message: "has no nodes"}
	}
	if lim.MaxNodes > 0 && len(top) > lim.MaxNodes {
		return nil, &Error{Field: "workflow", Message: fmt.Sprintf("has %d nodes; at most %d are allowed", len(top), lim.MaxNodes), kind: ErrTooManyNodes}
	}
	p := make(Prompt, len(top))
	for i, id := range slices.Sorted(maps.Keys(top)) {
		if err := stopped(ctx, i); err != nil {
			return nil, err
		}
		n, err := parseNode(id, top[id])
		if err != nil {
			return nil, err
		}
		p[id] = n
	}
	return p, nil
}

func parseNode(id string, raw json.RawMessage) (Node, error) {
	field := "workflow." + id
	var n Node
	if err := json.Unmarshal(raw, &n); err != nil {
		return n, &Error{Field: field, Message: "must be an object {class_type, inputs}"}
	}
	if err := json.Unmarshal(raw, &n.raw); err != nil {
		return n, &Error{Field: field, Message: "must be an object {class_type, inputs}"}
	}
	if n.ClassType == "" {
		return n, &Error{Field: field + ".class_type", Message: "is missing: every node needs its class_type"}
	}
	if n.Inputs == nil {
		n.Inputs = map[string]json.RawMessage{}
	}
	return n, nil
}

// Title is the node's _meta.title, or "".
func (n Node) Title() string {
	if n.Meta == nil {
		return ""
	}
	return n.Meta.Title
}

// FileRef is a params value that names an uploaded file.
type FileRef struct {
	FileID string `json:"fileId"`
}

// Param is one resolved params entry.
type Param struct {
	Key    string // as given
	NodeID string
	Input  string
	Value  json.RawMessage
	// File is set when Value is {"fileId": ...}.
	File *FileRef
}

// ResolveParams maps every params key to a node and input. A key that names
// no node, or a title that names several, is an *Error naming the key. It is
// ResolveParamsContext without a context.
func (p Prompt) ResolveParams(params map[string]json.RawMessage) ([]Param, error) {
	return p.ResolveParamsContext(context.Background(), params)
}

// ResolveParamsContext is ResolveParams, stopping with ctx's error when ctx
// ends. Its work is linear in the number of nodes and params: titles are
// indexed once, on the first key that is not a node id.
func (p Prompt) ResolveParamsContext(ctx context.Context, params map[string]json.RawMessage) ([]Param, error) {
	out := make([]Param, 0, len(params))
	r := resolver{p: p}
	for i, key := range slices.Sorted(maps.Keys(params)) {
		if err := stopped(ctx, i); err != nil {
			return nil, err
		}
		prm, err := r.resolve(key, params[key])
		if err != nil {
			return nil, err
		}
		out = append(out, prm)
	}
	return out, nil
}

// resolver finds the nodes params keys name.
type resolver struct {
	p Prompt
	// titles maps a title to the ids of its nodes, sorted; built on first use.
	titles map[string][]string
}

func (r *resolver) resolve(key string, value json.RawMessage) (Param, error) {
	field := "params." + key
	dot := strings.LastIndexByte(key, '.')
	if dot <= 0 || dot == len(key)-1 {
		return Param{}, &Error{Field: field, Message: `must be "<nodeId>.<inputName>" or "<node title>.<inputName>"`}
	}
	ref, input := key[:dot], key[dot+1:]
	nodeID, err := r.findNode(ref)
	if err != nil {
		return Param{}, &Error{Field: field, Message: err.Error()}
	}
	prm := Param{Key: key, NodeID: nodeID, Input: input, Value: value}
	if f, ok := asFileRef(value); ok {
		if f.FileID == "" {
			return Param{}, &Error{Field: field, Message: "fileId must not be empty"}
		}
		prm.File = &f
	}
	return prm, nil
}

func (r *resolver) findNode(ref string) (string, error) {
	if _, ok := r.p[ref]; ok {
		return ref, nil
	}
	if r.titles == nil {
		r.titles = make(map[string][]string)
		for id, n := range r.p {
			if t := n.Title(); t != "" {
				r.titles[t] = append(r.titles[t], id)
			}
		}
	}
	matches := r.titles[ref]
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no node has id or title %q", ref)
	case 1:
		return matches[0], nil
	}
	sorted := append([]string(nil), matches...)
	sort.Strings(sorted)
	return "", fmt.Errorf("title %q is ambiguous: nodes %s share it; use a node id", ref, strings.Join(sorted, ", "))
}

func asFileRef(v json.RawMessage) (FileRef, bool) {
	if v = bytes.TrimSpace(v); len(v) == 0 || v[0] != '{' {
		return FileRef{}, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) != nil || len(m) != 1 {
		return FileRef{}, false
	}
	raw, ok := m["fileId"]
	if !ok {
		return FileRef{}, false
	}
	var f FileRef
	if json.Unmarshal(raw, &f.FileID) != nil {
		return FileRef{}, false
	}
	return f, true
}

// Apply returns the prompt with params applied. fileName maps a file
// reference to the value the instance needs (its uploaded name); it is
// called once per file param. It is ApplyWith without OutputDir.
func (p Prompt) Apply(params []Param, fileName func(FileRef) (string, error)) (json.RawMessage, error) {
	return p.ApplyWith(params, ApplyOptions{FileName: fileName})
}

// ApplyOptions shape the prompt ApplyWith builds.
type ApplyOptions struct {
	// FileName maps a file reference to the value the instance needs (its
	// uploaded name); it is called once per file param. Nil puts "".
	FileName func(FileRef) (string, error)
	// OutputDir, when set, moves every output of the prompt under it: each
	// filename_prefix input, params applied, becomes OutputPrefix(OutputDir,
	// its value).
	OutputDir string
}

// ApplyWith returns the prompt with params applied as o says.
func (p Prompt) ApplyWith(params []Param, o ApplyOptions) (json.RawMessage, error) {
	inputs := make(map[string]map[string]json.RawMessage, len(p))
	for id, n := range p {
		inputs[id] = maps.Clone(n.Inputs)
	}
	for _, prm := range params {
		v := prm.Value
		if prm.File != nil {
			var name string
			if o.FileName != nil {
				var err error
				if name, err = o.FileName(*prm.File); err != nil {
					return nil, fmt.Errorf("workflow: file for %s: %w", prm.Key, err)
				}
			}
			v, _ = json.Marshal(name)
		}
		inputs[prm.NodeID][prm.Input] = v
	}
	if o.OutputDir != "" {
		for _, in := range inputs {
			if v, ok := in[prefixInput]; ok {
				in[prefixInput], _ = json.Marshal(OutputPrefix(o.OutputDir, v))
			}
		}
	}
	out := make(map[string]map[string]json.RawMessage, len(p))
	for id, n := range p {
		node := maps.Clone(n.raw)
		node["inputs"], _ = json.Marshal(inputs[id])
		out[id] = node
	}
	return json.Marshal(out)
}

// checkpointInputs are the inputs that name a model file to load.
var checkpointInputs = []string{"ckpt_name", "unet_name"}

// Checkpoints lists the distinct model files the prompt loads, sorted.
func (p Prompt) Checkpoints() []string {
	seen := map[string]bool{}
	for _, n := range p {
		for _, in := range checkpointInputs {
			var name string
			if raw, ok := n.Inputs[in]; ok && json.Unmarshal(raw, &name) == nil && name != "" {
				seen[name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
