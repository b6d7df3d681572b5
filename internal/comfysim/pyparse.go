package comfysim

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

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
		if done, err := p.after('}'); err != nil || done {
			return o, err
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
		if done, err := p.after(']'); err != nil || done {
			return a, err
		}
	}
}

// after consumes the "," or the closing byte that follows a member.
func (p *jsonParser) after(closing byte) (done bool, err error) {
	p.ws()
	if p.i >= len(p.b) {
		return false, errJSON
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		return false, nil
	case closing:
		p.i++
		return true, nil
	}
	return false, errJSON
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
