package comfysim

import (
	"errors"
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

func (o *obj) del(k string) {
	i := o.find(k)
	if i < 0 {
		return
	}
	o.keys = append(o.keys[:i:i], o.keys[i+1:]...)
	o.vals = append(o.vals[:i:i], o.vals[i+1:]...)
	if o.idx != nil {
		o.reindex()
	}
}

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

// deepCopy copies a value tree so later mutation of the copy cannot touch the source.
func deepCopy(v any) any {
	switch t := v.(type) {
	case *obj:
		c := t.clone()
		for i, vv := range c.vals {
			c.vals[i] = deepCopy(vv)
		}
		return c
	case []any:
		c := make([]any, len(t))
		for i, vv := range t {
			c[i] = deepCopy(vv)
		}
		return c
	}
	return v
}

// errJSON is what a body that Python's json.loads rejects produces; handlers
// turn it into aiohttp's plain-text 500.
var errJSON = errors.New("comfysim: body is not JSON")

// jsonParser is a json.loads-compatible parser: NaN and Infinity are
// accepted, control characters in strings are not, duplicate keys keep the
// first position and the last value.
type jsonParser struct {
	b     []byte
	i     int
	depth int
	// spans records, for a top-level object, where each member's value sits.
	spans map[string][2]int
}

// parsePy parses b like Python's json.loads.
func parsePy(b []byte) (any, error) {
	p := &jsonParser{b: b}
	return p.parseDocument()
}

// parsePyTop also reports the byte span of every top-level member value.
func parsePyTop(b []byte) (any, map[string][2]int, error) {
	p := &jsonParser{b: b, spans: map[string][2]int{}}
	v, err := p.parseDocument()
	return v, p.spans, err
}

func (p *jsonParser) parseDocument() (any, error) {
	if !utf8.Valid(p.b) {
		return nil, errJSON
	}
	p.ws()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, errJSON
	}
	return v, nil
}

func (p *jsonParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

func (p *jsonParser) value() (any, error) {
	if p.i >= len(p.b) {
		return nil, errJSON
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case p.lit("null"):
		return nil, nil
	case p.lit("true"):
		return true, nil
	case p.lit("false"):
		return false, nil
	case p.lit("NaN"):
		return math.NaN(), nil
	case p.lit("Infinity"):
		return math.Inf(1), nil
	case p.lit("-Infinity"):
		return math.Inf(-1), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, errJSON
}

func (p *jsonParser) object() (any, error) {
	p.i++
	p.depth++
	defer func() { p.depth-- }()
	o := newObj()
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return o, nil
	}
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, errJSON
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, errJSON
		}
		p.i++
		p.ws()
		start := p.i
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		if p.depth == 1 && p.spans != nil {
			p.spans[k] = [2]int{start, p.i}
		}
		o.set(k, v)
		p.ws()
		if p.i >= len(p.b) {
			return nil, errJSON
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return o, nil
		default:
			return nil, errJSON
		}
	}
}

func (p *jsonParser) array() (any, error) {
	p.i++
	p.depth++
	defer func() { p.depth-- }()
	a := []any{}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return a, nil
	}
	for {
		p.ws()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.ws()
		if p.i >= len(p.b) {
			return nil, errJSON
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return a, nil
		default:
			return nil, errJSON
		}
	}
}

func (p *jsonParser) number() (any, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i >= len(p.b) {
		return nil, errJSON
	}
	if p.b[p.i] == '0' {
		p.i++
	} else if !p.digits() {
		return nil, errJSON
	}
	isFloat := false
	if p.i < len(p.b) && p.b[p.i] == '.' {
		mark := p.i
		p.i++
		if !p.digits() {
			p.i = mark // Python's scanner stops before a bare '.'
		} else {
			isFloat = true
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		mark := p.i
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if !p.digits() {
			p.i = mark
		} else {
			isFloat = true
		}
	}
	text := string(p.b[start:p.i])
	if isFloat {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, errJSON
		}
		return f, nil
	}
	return intFromText(text), nil
}

func (p *jsonParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

// intFromText turns canonical decimal text into an int64 when it fits.
func intFromText(text string) any {
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n
	}
	if text == "-0" {
		return int64(0)
	}
	return intLit(text)
}

func (p *jsonParser) str() (string, error) {
	p.i++ // opening quote
	start := p.i
	// Fast path: no escapes.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := string(p.b[start:p.i])
			p.i++
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", errJSON
		}
		p.i++
	}
	buf := append([]byte(nil), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(buf), nil
		case c < 0x20:
			return "", errJSON
		case c == '\\':
			var err error
			if buf, err = p.escape(buf); err != nil {
				return "", err
			}
		default:
			buf = append(buf, c)
			p.i++
		}
	}
	return "", errJSON
}

func (p *jsonParser) escape(buf []byte) ([]byte, error) {
	p.i++
	if p.i >= len(p.b) {
		return nil, errJSON
	}
	c := p.b[p.i]
	p.i++
	switch c {
	case '"', '\\', '/':
		return append(buf, c), nil
	case 'b':
		return append(buf, '\b'), nil
	case 'f':
		return append(buf, '\f'), nil
	case 'n':
		return append(buf, '\n'), nil
	case 'r':
		return append(buf, '\r'), nil
	case 't':
		return append(buf, '\t'), nil
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return nil, errJSON
		}
		if utf16.IsSurrogate(r) && p.lit(`\u`) {
			if r2, ok := p.hex4(); ok {
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					return utf8.AppendRune(buf, d), nil
				}
				buf = utf8.AppendRune(buf, utf8.RuneError)
				return utf8.AppendRune(buf, r2), nil
			}
			return nil, errJSON
		}
		return utf8.AppendRune(buf, r), nil
	}
	return nil, errJSON
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
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
