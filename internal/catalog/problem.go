package catalog

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Problem types: ComfyUI's own error.type values where ComfyUI has one
// (v0.3.65, as recorded in internal/comfysim/testdata/traces/s04), and the
// gateway's for what only a fleet can tell.
const (
	// ProblemInvalidPrompt: a node's class_type is offered by no instance
	// (ComfyUI: "Cannot execute because node X does not exist.").
	ProblemInvalidPrompt = "invalid_prompt"
	// ProblemNoOutputs: no node is an output node.
	ProblemNoOutputs = "prompt_no_outputs"
	// ProblemOutputsFailed: every output fails validation on every instance.
	ProblemOutputsFailed = "prompt_outputs_failed_validation"
	// ProblemInvalidParams: a params key names an input its node does not
	// have (ComfyUI would ignore it silently).
	ProblemInvalidParams = "invalid_params"
	// ProblemNoCapableInstance: each part of the prompt runs somewhere, but
	// no single instance can run all of it.
	ProblemNoCapableInstance = "no_capable_instance"
	// ProblemNoMatchingLabels: no configured instance has the labels the
	// task requires.
	ProblemNoMatchingLabels = "no_matching_labels"
)

// Input error types of node_errors entries. The ComfyUI ones are spelled as
// ComfyUI spells them; MissingNodeType is current ComfyUI's (v0.12+) name
// for an unknown class, which v0.3.65 reports only at the top level;
// UnknownInput is the gateway's.
const (
	ErrMissingNodeType      = "missing_node_type"
	ErrUnknownInput         = "unknown_input"
	ErrRequiredInputMissing = "required_input_missing"
	ErrValueNotInList       = "value_not_in_list"
	ErrValueSmallerThanMin  = "value_smaller_than_min"
	ErrValueBiggerThanMax   = "value_bigger_than_max"
)

// Problem is why a prompt cannot run on the fleet, in ComfyUI's terms: the
// fields of its error object and its node_errors.
type Problem struct {
	// Field is the request field at fault: "workflow", "params.<key>" or
	// "requires".
	Field   string
	Type    string
	Message string
	Details string
	// NodeErrors is ComfyUI's node_errors object, keyed by node id.
	NodeErrors map[string]*NodeError
	// Catalogs says, for ProblemNoCapableInstance, what each catalogue
	// lacks and which instances have it.
	Catalogs []CatalogProblem
}

// Sentence is the problem in one line for people: the message and the
// details of the first node error.
func (p *Problem) Sentence() string {
	s := p.Message
	if p.Details != "" {
		s = strings.TrimSuffix(s, ".") + ": " + firstLine(p.Details)
	} else if e, id, ok := p.firstError(); ok {
		s += ": node " + id + " (" + p.NodeErrors[id].ClassType + "): " + e.Message + ": " + e.Details
	}
	return s
}

func (p *Problem) firstError() (InputError, string, bool) {
	for _, id := range slices.Sorted(maps.Keys(p.NodeErrors)) {
		if errs := p.NodeErrors[id].Errors; len(errs) > 0 {
			return errs[0], id, true
		}
	}
	return InputError{}, "", false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// NodeError is one entry of node_errors, in ComfyUI's shape.
type NodeError struct {
	Errors           []InputError `json:"errors"`
	DependentOutputs []string     `json:"dependent_outputs"`
	ClassType        string       `json:"class_type"`
}

// InputError is one error of a node, in ComfyUI's shape. ExtraInfo keeps
// ComfyUI's key order.
type InputError struct {
	Type      string          `json:"type"`
	Message   string          `json:"message"`
	Details   string          `json:"details"`
	ExtraInfo json.RawMessage `json:"extra_info"`
}

// CatalogProblem is what one catalogue lacks to run a prompt.
type CatalogProblem struct {
	Hash       string                `json:"hash"`
	Instances  []string              `json:"instances"`
	NodeErrors map[string]*NodeError `json:"nodeErrors"`
}

// object encodes key, value pairs as a JSON object in that order.
func object(kv ...any) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv[i])
		v, err := json.Marshal(kv[i+1])
		if err != nil {
			v = []byte("null")
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func missingNodeType(id string, n *Node) InputError {
	title := n.Title
	if title == "" {
		title = n.ClassType
	}
	return InputError{
		Type:      ErrMissingNodeType,
		Message:   "Node '" + title + "' not found. The custom node may not be installed.",
		Details:   "Node ID '#" + id + "'",
		ExtraInfo: object("node_id", id, "class_type", n.ClassType, "node_title", title),
	}
}

func requiredInputMissing(name string) InputError {
	return InputError{Type: ErrRequiredInputMissing, Message: "Required input is missing", Details: name,
		ExtraInfo: object("input_name", name)}
}

func unknownInput(p *Param, class string, ce *classEntry) InputError {
	details := p.Input + ": " + class + " has no input " + strconv.Quote(p.Input)
	if near := nearest(p.Input, ce.order); near != "" {
		details += "; did you mean " + strconv.Quote(near) + "?"
	}
	return InputError{Type: ErrUnknownInput, Message: "Input does not exist on this node", Details: details,
		ExtraInfo: object("input_name", p.Input, "params_key", p.Key)}
}

// notInList is ComfyUI's value_not_in_list: the options are listed up to
// 20, beyond that only counted (and input_config is null).
func notInList(name string, val any, options []any) InputError {
	var config any
	list := pyRepr(options)
	if len(options) > 20 {
		list = "(list of length " + strconv.Itoa(len(options)) + ")"
	} else {
		config = []any{options, map[string]any{}}
	}
	return InputError{Type: ErrValueNotInList, Message: "Value not in list",
		Details:   name + ": '" + pyStr(val) + "' not in " + list,
		ExtraInfo: object("input_name", name, "input_config", config, "received_value", val)}
}

func outOfRange(typ, message string, in *Input, val any) InputError {
	return InputError{Type: typ, Message: message, Details: in.Name,
		ExtraInfo: object("input_name", in.Name, "input_config", inputConfig(in), "received_value", val)}
}

// inputConfig is ComfyUI's [type, options] of a numeric input, with the
// widget options the catalogue keeps.
func inputConfig(in *Input) []any {
	var kv []any
	for _, f := range []struct {
		k string
		v json.Number
	}{{"default", in.Default}, {"min", in.Min}, {"max", in.Max}, {"step", in.Step}} {
		if f.v != "" {
			kv = append(kv, f.k, f.v)
		}
	}
	return []any{in.Type, object(kv...)}
}

// nearest is the name closest to s by edit distance, if it is close enough
// to be a typo (at most a third of the letters differ).
func nearest(s string, names []string) string {
	best, bestD := "", len(s)/3+1
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// pyStr is Python's str() of a JSON value.
func pyStr(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case float64:
		return pyFloat(t)
	case bool:
		if t {
			return "True"
		}
		return "False"
	case nil:
		return "None"
	}
	return pyRepr(v)
}

// pyRepr is Python's repr() of a JSON value.
func pyRepr(v any) string {
	switch t := v.(type) {
	case string:
		return pyQuote(t)
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = pyRepr(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		parts := make([]string, 0, len(t))
		for _, k := range slices.Sorted(maps.Keys(t)) {
			parts = append(parts, pyQuote(k)+": "+pyRepr(t[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return pyStr(v)
}

// pyQuote quotes s as Python's repr does: single quotes unless s holds a
// single quote and no double quote.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x` + strconv.FormatInt(int64(r)|0x100, 16)[1:])
		case !unicode.IsPrint(r):
			b.WriteString(strconv.QuoteRuneToASCII(r)[1 : len(strconv.QuoteRuneToASCII(r))-1])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// pyFloat is Python's str() of a float.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if a := math.Abs(f); a != 0 && (a >= 1e16 || a < 1e-4) {
		return strconv.FormatFloat(f, 'e', -1, 64) // 1e-05, 1e+16: as Python writes them
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsRune(s, '.') {
		s += ".0"
	}
	return s
}
