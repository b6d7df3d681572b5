package comfysim

import (
	"fmt"
	"strings"
	"testing"
)

// Shape comparison of JSON values decoded with parsePy (ordered objects,
// int distinct from float). By default everything must match: JSON type,
// object keys and their order, array lengths and values. A shapeSpec relaxes
// chosen paths:
//   - "blind" paths keep the structure but ignore scalar values (ids,
//     timestamps, counters);
//   - "loose" paths only need the same JSON type, nothing below it
//     (tracebacks, tensor reprs, machine facts);
//   - "unordered" arrays are compared as multisets (Python sets turned
//     into lists, such as execution_error's "executed").
//
// A path pattern is a dot-joined list of keys; "*" matches one element, and
// a pattern without dots matches that key at any depth.

type shapeSpec struct {
	blind, loose, unordered []string
}

// merge returns a spec with the patterns of both.
func (s shapeSpec) merge(o shapeSpec) shapeSpec {
	return shapeSpec{
		blind:     append(append([]string{}, s.blind...), o.blind...),
		loose:     append(append([]string{}, s.loose...), o.loose...),
		unordered: append(append([]string{}, s.unordered...), o.unordered...),
	}
}

// defaultShape ignores the values that legitimately differ between two
// servers: timestamps, generated client ids and the prompt counter. (The
// replay maps prompt ids and temp file names instead of ignoring them.)
var defaultShape = shapeSpec{
	blind:     []string{"timestamp", "sid", "number", "prompt.0", "queue_running.*.0", "queue_pending.*.0"},
	unordered: []string{"executed", "current_outputs"},
	loose:     []string{"traceback"},
}

func matchPath(pattern string, path []string) bool {
	parts := strings.Split(pattern, ".")
	if len(parts) == 1 {
		return len(path) > 0 && (path[len(path)-1] == pattern || pattern == "*")
	}
	if len(parts) > len(path) {
		return false
	}
	tail := path[len(path)-len(parts):]
	for i, p := range parts {
		if p != "*" && p != tail[i] {
			return false
		}
	}
	return true
}

func matchAny(patterns []string, path []string) bool {
	for _, p := range patterns {
		if matchPath(p, path) {
			return true
		}
	}
	return false
}

// jsonKind names the JSON type of a parsePy value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case int, int64, intLit:
		return "int"
	case float64:
		return "float"
	case string:
		return "string"
	case []any:
		return "array"
	case *obj:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// shapeDiff lists the differences between want and got under spec.
func shapeDiff(want, got any, spec shapeSpec) []string {
	var d []string
	diffAt(&d, nil, want, got, spec, false)
	return d
}

func diffAt(d *[]string, path []string, want, got any, spec shapeSpec, blind bool) {
	where := "$"
	if len(path) > 0 {
		where = strings.Join(path, ".")
	}
	wk, gk := jsonKind(want), jsonKind(got)
	if wk != gk {
		*d = append(*d, fmt.Sprintf("%s: type %s, want %s (got %s)", where, gk, wk, short(got)))
		return
	}
	if matchAny(spec.loose, path) {
		return
	}
	blind = blind || matchAny(spec.blind, path)
	switch w := want.(type) {
	case *obj:
		diffObj(d, path, w, got.(*obj), spec, blind)
	case []any:
		g := got.([]any)
		if len(w) != len(g) {
			*d = append(*d, fmt.Sprintf("%s: %d elements, want %d (got %s)", where, len(g), len(w), short(got)))
			return
		}
		if matchAny(spec.unordered, path) && !blind {
			if !sameMultiset(w, g) {
				*d = append(*d, fmt.Sprintf("%s: elements %s, want %s in any order", where, short(got), short(want)))
			}
			return
		}
		for i := range w {
			diffAt(d, append(path, itoa(i)), w[i], g[i], spec, blind)
		}
	default:
		if !blind && !pyEqual(want, got) {
			*d = append(*d, fmt.Sprintf("%s: %s, want %s", where, short(got), short(want)))
		}
	}
}

// diffObj compares objects key by key in order; two keys that are both
// UUIDs (history entries keyed by prompt_id) count as the same key.
func diffObj(d *[]string, path []string, w, g *obj, spec shapeSpec, blind bool) {
	where := strings.Join(path, ".")
	if len(w.keys) != len(g.keys) {
		*d = append(*d, fmt.Sprintf("%s: keys %v, want %v", where, g.keys, w.keys))
		return
	}
	for i, k := range w.keys {
		gk := g.keys[i]
		if gk != k && !(isID(k) && isID(gk)) {
			*d = append(*d, fmt.Sprintf("%s: keys %v, want %v", where, g.keys, w.keys))
			return
		}
		diffAt(d, append(append([]string{}, path...), k), w.at(k), g.at(gk), spec, blind)
	}
}

func sameMultiset(a, b []any) bool {
	count := map[string]int{}
	for _, v := range a {
		count[string(encodePy(v))]++
	}
	for _, v := range b {
		count[string(encodePy(v))]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

func short(v any) string {
	s := string(encodePy(v))
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func mustParse(t testing.TB, s string) any {
	t.Helper()
	v, err := parsePy([]byte(s))
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

func TestShapeDiff(t *testing.T) {
	t.Parallel()
	spec := shapeSpec{blind: []string{"prompt_id", "prompt.0"}, loose: []string{"traceback"}, unordered: []string{"executed"}}
	tests := []struct {
		name      string
		want, got string
		diffs     int
	}{
		{"equal", `{"a": 1, "b": [1.0, "x"]}`, `{"a": 1, "b": [1.0, "x"]}`, 0},
		{"value differs", `{"a": 1}`, `{"a": 2}`, 1},
		{"int is not float", `{"a": 1}`, `{"a": 1.0}`, 1},
		{"key order matters", `{"a": 1, "b": 2}`, `{"b": 2, "a": 1}`, 1},
		{"missing key", `{"a": 1, "b": 2}`, `{"a": 1}`, 1},
		{"blind key ignores value", `{"prompt_id": "x", "n": {"prompt_id": "y"}}`, `{"prompt_id": "z", "n": {"prompt_id": "w"}}`, 0},
		{"blind key keeps type", `{"prompt_id": "x"}`, `{"prompt_id": 5}`, 1},
		{"blind path", `{"prompt": [1, "a"]}`, `{"prompt": [7, "a"]}`, 0},
		{"blind path is exact", `{"prompt": [1, "a"]}`, `{"prompt": [1, "b"]}`, 1},
		{"loose ignores content", `{"traceback": ["a", "b"]}`, `{"traceback": ["c"]}`, 0},
		{"loose keeps type", `{"traceback": ["a"]}`, `{"traceback": "a"}`, 1},
		{"unordered", `{"executed": ["1", "2"]}`, `{"executed": ["2", "1"]}`, 0},
		{"unordered checks members", `{"executed": ["1", "2"]}`, `{"executed": ["2", "3"]}`, 1},
		{"array length", `[1, 2]`, `[1]`, 1},
		{"null", `{"a": null}`, `{"a": null}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := shapeDiff(mustParse(t, tc.want), mustParse(t, tc.got), spec)
			if len(got) != tc.diffs {
				t.Errorf("shapeDiff(%s, %s) = %q, want %d difference(s)", tc.want, tc.got, got, tc.diffs)
			}
		})
	}
}
