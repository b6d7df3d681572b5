package comfysim

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The simulator keeps JSON the way ComfyUI (Python) does: objects keep their
// insertion order, ints and floats stay distinct (1 vs 1.0), and output uses
// json.dumps' default layout (", " and ": " separators, ASCII-only escapes),
// so bodies and frames match the traces byte for byte where values agree.
//
// Values are: nil, bool, string, float64 (a Python float), intLit, int, int64
// (Python ints), []any, *obj, and rawJSON (already encoded in this layout).

// intLit is a Python int too large or too precise to keep in an int64, kept
// as its canonical decimal text.
type intLit string

// rawJSON is a value already encoded in Python layout; it is copied verbatim.
type rawJSON []byte

// obj is a JSON object with Python dict semantics: keys keep insertion order
// and assigning an existing key keeps its position. Most objects are small,
// so keys are found by scanning; an index appears past idxMin keys.
type obj struct {
	keys []string
	vals []any
	idx  map[string]int
}

const idxMin = 16

// newObj builds an object from alternating keys and values.
func newObj(kv ...any) *obj {
	o := &obj{keys: make([]string, 0, len(kv)/2), vals: make([]any, 0, len(kv)/2)}
	for i := 0; i+1 < len(kv); i += 2 {
		o.set(kv[i].(string), kv[i+1])
	}
	return o
}

func (o *obj) find(k string) int {
	if o.idx != nil {
		if i, ok := o.idx[k]; ok {
			return i
		}
		return -1
	}
	for i, kk := range o.keys {
		if kk == k {
			return i
		}
	}
	return -1
}

func (o *obj) set(k string, v any) {
	if i := o.find(k); i >= 0 {
		o.vals[i] = v
		return
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
	switch {
	case o.idx != nil:
		o.idx[k] = len(o.keys) - 1
	case len(o.keys) > idxMin:
		o.reindex()
	}
}

func (o *obj) reindex() {
	o.idx = make(map[string]int, len(o.keys))
	for i, k := range o.keys {
		o.idx[k] = i
	}
}

func (o *obj) get(k string) (any, bool) {
	if i := o.find(k); i >= 0 {
		return o.vals[i], true
	}
	return nil, false
}

// at is the value of k, nil when absent.
func (o *obj) at(k string) any {
	v, _ := o.get(k)
	return v
}

func (o *obj) has(k string) bool { return o.find(k) >= 0 }

func (o *obj) len() int { return len(o.keys) }

// str returns the value of k when it is a string.
func (o *obj) str(k string) (string, bool) {
	s, ok := o.at(k).(string)
	return s, ok
}

// sub returns the value of k when it is an object.
func (o *obj) sub(k string) *obj {
	s, _ := o.at(k).(*obj)
	return s
}

// clone copies the object one level deep.
func (o *obj) clone() *obj {
	c := &obj{keys: append([]string(nil), o.keys...), vals: append([]any(nil), o.vals...)}
	if o.idx != nil {
		c.reindex()
	}
	return c
}

// encodePy encodes v the way Python's json.dumps does by default.
func encodePy(v any) []byte {
	return appendPy(make([]byte, 0, 256), v)
}

func appendPy(b []byte, v any) []byte {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		if t {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case string:
		return appendPyString(b, t)
	case float64:
		return append(b, pyFloatJSON(t)...)
	case int:
		return strconv.AppendInt(b, int64(t), 10)
	case int64:
		return strconv.AppendInt(b, t, 10)
	case intLit:
		return append(b, t...)
	case rawJSON:
		return append(b, t...)
	case []string:
		b = append(b, '[')
		for i, s := range t {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendPyString(b, s)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, e := range t {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendPy(b, e)
		}
		return append(b, ']')
	case *obj:
		return appendPyObj(b, t)
	}
	panic("comfysim: cannot encode " + pyTypeName(v))
}

func appendPyObj(b []byte, o *obj) []byte {
	if o == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, k := range o.keys {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendPyString(b, k)
		b = append(b, ": "...)
		b = appendPy(b, o.vals[i])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendPyString writes s with ensure_ascii escaping, as json.dumps does.
func appendPyString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				if c < 0x20 {
					b = appendU(b, rune(c))
				} else {
					b = append(b, c)
				}
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = appendU(appendU(b, r1), r2)
			continue
		}
		b = appendU(b, r)
	}
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// pyFloatJSON formats f as json.dumps does (repr, NaN, Infinity).
func pyFloatJSON(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return pyFloatRepr(f)
}

// pyFloatRepr formats a finite float like Python's repr: shortest digits,
// fixed notation for exponents in [-4, 16), and a trailing ".0" on integers.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	exp := int(math.Floor(math.Log10(math.Abs(f))))
	e := strconv.FormatFloat(f, 'e', -1, 64)
	// The mantissa digits decide the exponent exactly; Log10 can be off by one.
	if i := indexByte(e, 'e'); i >= 0 {
		if n, err := strconv.Atoi(e[i+1:]); err == nil {
			exp = n
		}
	}
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if indexByte(s, '.') < 0 {
		s += ".0"
	}
	return s
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
