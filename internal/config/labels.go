package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Labels are the name: value pairs an operator attaches to a server, such
// as {gpu: a100, pool: video}. Every instance of the server has them, and a
// task's "requires" names the labels its instance must have.
type Labels map[string]string

var _ anyDecoder = (*Labels)(nil)

// maxLabels bounds the labels of one server.
const maxLabels = 32

func (l *Labels) decodeAny(x any) error {
	m, ok := x.(map[string]any)
	if !ok {
		return errors.New("must be a mapping of label names to values, like {gpu: a100}")
	}
	out := make(Labels, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case string:
			out[k] = t
		case bool:
			out[k] = strconv.FormatBool(t)
		default:
			n, ok := toInt64(v)
			if !ok {
				return fmt.Errorf("label %q: must be a string or a whole number", k)
			}
			out[k] = strconv.FormatInt(n, 10)
		}
	}
	*l = out
	return nil
}

// clone copies l; nil stays nil.
func (l Labels) clone() map[string]string {
	if l == nil {
		return nil
	}
	return maps.Clone(l)
}

// UnmarshalJSON reads a mapping of names to values.
func (l *Labels) UnmarshalJSON(b []byte) error { return unmarshalJSONAny(b, l) }

// UnmarshalYAML reads a mapping of names to values.
func (l *Labels) UnmarshalYAML(n *yaml.Node) error { return unmarshalYAMLAny(n, l) }

// validateLabels checks a server's labels: names and values are short names
// (IsLabel).
func validateLabels(v *checker, field string, l Labels) {
	if len(l) > maxLabels {
		v.add(field, "at most %d labels", maxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(l)) {
		switch {
		case !IsLabel(k) && k == "":
			v.add(field, "names must be 1..63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
		case !IsLabel(k):
			v.add(field+"."+k, "names must be 1..63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
		case !IsLabel(l[k]):
			v.add(field+"."+k, "values must be 1..63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
		}
	}
}

// IsLabel reports whether s may be a label name or value: 1..63 ASCII
// letters, digits, '-', '_' or '.', starting and ending with a letter or
// digit (as Kubernetes label values).
func IsLabel(s string) bool {
	if s == "" || len(s) > 63 || !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
