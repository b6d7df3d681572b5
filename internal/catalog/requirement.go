package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Requirement is what decides where a prompt can run: the prompt reduced to
// its node classes, the links between nodes, which inputs are set, the
// values of combo inputs (models, samplers...) and of params, and the labels
// the task requires. Free values (texts, seeds, sizes) are dropped, so the
// tasks of one workflow template with one set of models share a
// Requirement, however their texts and seeds differ.
//
// Key names it: the hex of the first 16 bytes of the sha256 of Data, its
// canonical encoding. A requirement never changes, so whether an instance
// can run it is a fact of the instance's catalogue and labels alone: the
// gateway stores each Requirement once, and recomputes which instances can
// run it when an instance's catalogue or labels change (Index.Capable).
//
// Numeric bounds are not part of it: a value out of range everywhere is
// refused at submit, and one out of range on some instances only is left
// to their own validation.
type Requirement struct {
	Key  string
	Data []byte
	req  *Request
}

// reqData is the encoding of a Requirement.
type reqData struct {
	Prompt   map[string]reqNode `json:"prompt"`
	Params   []reqParam         `json:"params,omitempty"`
	Requires map[string]string  `json:"requires,omitempty"`
}

type reqNode struct {
	Class  string                     `json:"class"`
	Inputs map[string]json.RawMessage `json:"inputs,omitempty"`
}

type reqParam struct {
	Node  string          `json:"node"`
	Input string          `json:"input"`
	Value json.RawMessage `json:"value,omitempty"`
	File  bool            `json:"file,omitempty"`
}

// setValue stands for a value the requirement drops: an empty list, which
// the checks skip (it is neither a link nor a widget value).
var setValue = json.RawMessage(`[]`)

// Requirement reduces req with what the index knows: an input keeps its
// value when some catalogue declares it a checked combo. With no catalogue
// known it keeps only classes, links and which inputs are set.
func (ix *Index) Requirement(req *Request) *Requirement {
	d := reqData{Prompt: make(map[string]reqNode, len(req.Prompt)), Requires: req.Requires}
	if len(d.Requires) == 0 {
		d.Requires = nil
	}
	for id, n := range req.Prompt {
		rn := reqNode{Class: n.ClassType, Inputs: make(map[string]json.RawMessage, len(n.Inputs))}
		for name, raw := range n.Inputs {
			rn.Inputs[name] = ix.reduce(req, n.ClassType, name, raw)
		}
		d.Prompt[id] = rn
	}
	for _, p := range req.Params {
		rp := reqParam{Node: p.NodeID, Input: p.Input, File: p.File}
		if !p.File {
			class := ""
			if n, ok := req.Prompt[p.NodeID]; ok {
				class = n.ClassType
			}
			rp.Value = ix.reduce(req, class, p.Input, p.Value)
		}
		d.Params = append(d.Params, rp)
	}
	slices.SortFunc(d.Params, func(a, b reqParam) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.Input, b.Input)
	})
	// Two params of one input: the last given wins, as in Apply.
	d.Params = slices.CompactFunc(d.Params, func(a, b reqParam) bool { return a.Node == b.Node && a.Input == b.Input })
	data, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("catalog: encode requirement: %v", err)) // only raw JSON that is not JSON gets here
	}
	r, err := DecodeRequirement(data)
	if err != nil {
		panic(fmt.Sprintf("catalog: decode requirement: %v", err))
	}
	return r
}

// reduce is the value an input keeps in a requirement.
func (ix *Index) reduce(req *Request, class, input string, raw json.RawMessage) json.RawMessage {
	val, err := decodeValue(raw)
	if err != nil {
		return setValue
	}
	if arr, ok := val.([]any); ok && len(arr) == 2 {
		if from, ok := arr[0].(string); ok {
			if _, exists := req.Prompt[from]; exists {
				return compact(raw)
			}
		}
	}
	if ix.checkedCombo(class, input) {
		if _, ok := optionKey(val); ok {
			return compact(raw)
		}
	}
	return setValue
}

// checkedCombo reports whether some catalogue declares class.input a combo
// whose value is checked.
func (ix *Index) checkedCombo(class, input string) bool {
	ce := ix.classes[class]
	if ce == nil {
		return false
	}
	ie := ce.inputs[input]
	if ie == nil {
		return false
	}
	for _, v := range ie.variants {
		if v.options != nil {
			return true
		}
	}
	return false
}

func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return setValue
	}
	return b.Bytes()
}

// DecodeRequirement reads a requirement's Data.
func DecodeRequirement(data []byte) (*Requirement, error) {
	var d reqData
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("catalog: decode requirement: %w", err)
	}
	req := &Request{Prompt: make(map[string]Node, len(d.Prompt)), Requires: d.Requires}
	for id, n := range d.Prompt {
		req.Prompt[id] = Node{ClassType: n.Class, Inputs: n.Inputs}
	}
	for _, p := range d.Params {
		req.Params = append(req.Params, Param{Key: p.Node + "." + p.Input, NodeID: p.Node, Input: p.Input, Value: p.Value, File: p.File})
	}
	sum := sha256.Sum256(data)
	return &Requirement{Key: hex.EncodeToString(sum[:16]), Data: bytes.Clone(data), req: req}, nil
}

// Requires are the labels the requirement asks of an instance.
func (r *Requirement) Requires() map[string]string { return r.req.Requires }

// Capable lists, sorted, the members that can run r: their labels match
// its requires, and their catalogue runs it (Check), or is not known yet
// (they validate at dispatch).
func (ix *Index) Capable(r *Requirement) []string {
	v := ix.Check(r.req)
	out := append(slices.Clone(v.Instances), v.Unknown...)
	slices.Sort(out)
	return slices.Compact(out)
}
