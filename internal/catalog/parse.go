package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Parse reads a GET /object_info body into a Catalog. It accepts Python's
// json.dumps output (NaN and Infinity read as null) and is lenient with
// custom nodes: an input spec it cannot read becomes an input of unknown
// type that takes any value, so the class still counts as offered.
func Parse(objectInfo []byte) (*Catalog, error) {
	keys, vals, err := orderedObject(pythonJSON(objectInfo))
	if err != nil {
		return nil, fmt.Errorf("catalog: parse object_info: %w", err)
	}
	c := &Catalog{Classes: make(map[string]*Class, len(keys))}
	for i, name := range keys {
		c.Classes[name] = parseClass(vals[i])
	}
	return c, nil
}

// classInfo is the part of an object_info entry the catalogue keeps.
type classInfo struct {
	Input      json.RawMessage `json:"input"`
	OutputNode any             `json:"output_node"`
}

func parseClass(raw json.RawMessage) *Class {
	cl := &Class{}
	var info classInfo
	if json.Unmarshal(raw, &info) != nil {
		return cl
	}
	cl.OutputNode = info.OutputNode == true
	groups := map[string]json.RawMessage{}
	if json.Unmarshal(info.Input, &groups) != nil {
		return cl
	}
	for _, group := range []string{"required", "optional"} {
		names, specs, err := orderedObject(groups[group])
		if err != nil {
			continue
		}
		for i, name := range names {
			in := parseInput(specs[i])
			in.Name, in.Required = name, group == "required"
			cl.Inputs = append(cl.Inputs, in)
		}
	}
	return cl
}

// uploadKeys mark combos listing files that change at run time.
var uploadKeys = []string{"image_upload", "video_upload", "audio_upload", "file_upload", "remote"}

// parseInput reads one [type, options] spec.
func parseInput(raw json.RawMessage) Input {
	v, err := decodeValue(raw)
	if err != nil {
		return Input{Type: "*"}
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		arr = []any{v}
	}
	extra := map[string]any{}
	if len(arr) > 1 {
		if m, ok := arr[1].(map[string]any); ok {
			extra = m
		}
	}
	switch t := arr[0].(type) {
	case []any:
		return combo(t, extra)
	case string:
		if t == TypeCombo {
			opts, ok := extra["options"].([]any)
			in := combo(opts, extra)
			in.Open = in.Open || !ok
			return in
		}
		in := Input{Type: t}
		if t == TypeInt || t == TypeFloat {
			in.Default, in.Min, in.Max, in.Step = numberOpt(extra["default"]), numberOpt(extra["min"]), numberOpt(extra["max"]), numberOpt(extra["step"])
		}
		return in
	}
	return Input{Type: "*"}
}

// combo builds a combo input from its options and widget options.
func combo(opts []any, extra map[string]any) Input {
	in := Input{Type: TypeCombo, Options: opts}
	for _, o := range opts {
		if _, ok := optionKey(o); !ok {
			in.Open = true
		}
	}
	if extra["multiselect"] == true {
		in.Open = true
	}
	for _, k := range uploadKeys {
		if v, ok := extra[k]; ok && v != false && v != nil {
			in.Open, in.Options = true, nil
		}
	}
	if in.Options == nil && !in.Open {
		in.Options = []any{}
	}
	return in
}

func numberOpt(v any) json.Number {
	n, _ := v.(json.Number)
	return n
}

// decodeValue decodes one JSON value (valid JSON, as from a decoded
// document) with numbers as json.Number. Scalars take a fast path.
func decodeValue(raw []byte) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("empty value")
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case c == '-' || c >= '0' && c <= '9':
		return json.Number(raw), nil
	case bytes.Equal(raw, []byte("true")):
		return true, nil
	case bytes.Equal(raw, []byte("false")):
		return false, nil
	case bytes.Equal(raw, []byte("null")):
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// orderedObject splits a JSON object into its keys and raw values, in order.
func orderedObject(raw []byte) ([]string, []json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil, errors.New("empty document")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys, vals = append(keys, key), append(vals, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("data after the object")
	}
	return keys, vals, nil
}

// pythonJSON replaces the NaN, Infinity and -Infinity literals Python's
// json.dumps writes (outside strings) with null, so encoding/json reads it.
func pythonJSON(b []byte) []byte {
	var out []byte
	last, inString, escaped := 0, false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		case c == '"':
			inString = true
			continue
		}
		for _, lit := range [...]string{"NaN", "Infinity", "-Infinity"} {
			if bytes.HasPrefix(b[i:], []byte(lit)) {
				out = append(append(out, b[last:i]...), "null"...)
				i += len(lit) - 1
				last = i + 1
				break
			}
		}
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}
