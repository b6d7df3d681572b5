// Package workflow checks ComfyUI API-format prompts and applies the
// contract's params to them: "<nodeId>.<input>" or "<node title>.<input>"
// keys, with {"fileId": ...} values standing for uploaded files.
package workflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
)

// Error is a problem with a workflow or its params; Field names the part
// (e.g. "workflow.3.class_type" or "params.KSampler.seed").
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

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
func Parse(raw json.RawMessage) (Prompt, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, &Error{"workflow", "is required: a ComfyUI API-format prompt (node id -> {class_type, inputs})"}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, &Error{"workflow", "must be a JSON object of node id -> {class_type, inputs}"}
	}
	if nodes, ok := top["nodes"]; ok && bytes.HasPrefix(bytes.TrimSpace(nodes), []byte("[")) {
		return nil, &Error{"workflow", `is in the UI format (it has a "nodes" array); export it from ComfyUI with "Save (API Format)" (enable Dev mode in the settings if the menu item is missing)`}
	}
	if len(top) == 0 {
		return nil, &Error{"workflow", "has no nodes"}
	}
	p := make(Prompt, len(top))
	for _, id := range sortedKeys(top) {
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
		return n, &Error{field, "must be an object {class_type, inputs}"}
	}
	if err := json.Unmarshal(raw, &n.raw); err != nil {
		return n, &Error{field, "must be an object {class_type, inputs}"}
	}
	if n.ClassType == "" {
		return n, &Error{field + ".class_type", "is missing: every node needs its class_type"}
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
// no node, or a title that names several, is an *Error naming the key.
func (p Prompt) ResolveParams(params map[string]json.RawMessage) ([]Param, error) {
	out := make([]Param, 0, len(params))
	for _, key := range sortedKeys(params) {
		prm, err := p.resolve(key, params[key])
		if err != nil {
			return nil, err
		}
		out = append(out, prm)
	}
	return out, nil
}

func (p Prompt) resolve(key string, value json.RawMessage) (Param, error) {
	field := "params." + key
	dot := strings.LastIndexByte(key, '.')
	if dot <= 0 || dot == len(key)-1 {
		return Param{}, &Error{field, `must be "<nodeId>.<inputName>" or "<node title>.<inputName>"`}
	}
	ref, input := key[:dot], key[dot+1:]
	nodeID, err := p.findNode(ref)
	if err != nil {
		return Param{}, &Error{field, err.Error()}
	}
	prm := Param{Key: key, NodeID: nodeID, Input: input, Value: value}
	if f, ok := asFileRef(value); ok {
		if f.FileID == "" {
			return Param{}, &Error{field, "fileId must not be empty"}
		}
		prm.File = &f
	}
	return prm, nil
}

func (p Prompt) findNode(ref string) (string, error) {
	if _, ok := p[ref]; ok {
		return ref, nil
	}
	var matches []string
	for id, n := range p {
		if n.Title() == ref {
			matches = append(matches, id)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no node has id or title %q", ref)
	case 1:
		return matches[0], nil
	}
	sort.Strings(matches)
	return "", fmt.Errorf("title %q is ambiguous: nodes %s share it; use a node id", ref, strings.Join(matches, ", "))
}

func asFileRef(v json.RawMessage) (FileRef, bool) {
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
// called once per file param.
func (p Prompt) Apply(params []Param, fileName func(FileRef) (string, error)) (json.RawMessage, error) {
	inputs := make(map[string]map[string]json.RawMessage, len(p))
	for id, n := range p {
		inputs[id] = maps.Clone(n.Inputs)
	}
	for _, prm := range params {
		v := prm.Value
		if prm.File != nil {
			name, err := fileName(*prm.File)
			if err != nil {
				return nil, fmt.Errorf("workflow: file for %s: %w", prm.Key, err)
			}
			v, _ = json.Marshal(name)
		}
		inputs[prm.NodeID][prm.Input] = v
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
	return sortedKeys(seen)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
