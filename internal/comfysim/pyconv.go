package comfysim

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Python semantics the validator and the error messages depend on: repr and
// str, truthiness, equality, and the int()/float()/str()/bool() conversions
// that ComfyUI applies to widget values.

// pyExc is a Python exception as ComfyUI reports it: a qualified type name,
// the str() of the exception and a formatted traceback.
type pyExc struct {
	typ string
	msg string
	tb  []string
}

func (e *pyExc) Error() string { return e.typ + ": " + e.msg }

func newExc(typ, msg string) *pyExc { return &pyExc{typ: typ, msg: msg} }

// pyTypeName is type(v).__name__.
func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int, int64, intLit:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []any, []string:
		return "list"
	case *obj:
		return "dict"
	}
	return "object"
}

// pyStr is str(v).
func pyStr(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return pyRepr(v)
}

// pyRepr is repr(v).
func pyRepr(v any) string {
	var sb strings.Builder
	writeRepr(&sb, v)
	return sb.String()
}

func writeRepr(sb *strings.Builder, v any) {
	switch t := v.(type) {
	case nil:
		sb.WriteString("None")
	case bool:
		if t {
			sb.WriteString("True")
		} else {
			sb.WriteString("False")
		}
	case string:
		sb.WriteString(pyQuote(t))
	case float64:
		sb.WriteString(pyFloatRepr(t))
	case int:
		sb.WriteString(strconv.Itoa(t))
	case int64:
		sb.WriteString(strconv.FormatInt(t, 10))
	case intLit:
		sb.WriteString(string(t))
	case []string:
		sb.WriteByte('[')
		for i, s := range t {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(pyQuote(s))
		}
		sb.WriteByte(']')
	case []any:
		sb.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				sb.WriteString(", ")
			}
			writeRepr(sb, e)
		}
		sb.WriteByte(']')
	case *obj:
		sb.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(pyQuote(k))
			sb.WriteString(": ")
			writeRepr(sb, t.at(k))
		}
		sb.WriteByte('}')
	case rawJSON:
		sb.Write(t)
	default:
		sb.WriteString("<object>")
	}
}

// pyQuote is repr() of a str: single quotes unless the text holds a single
// quote and no double quote.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var sb strings.Builder
	sb.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			sb.WriteString(`\x`)
			sb.WriteByte(hexDigits[r>>4])
			sb.WriteByte(hexDigits[r&0xf])
		case r >= utf8.RuneSelf && !unicode.IsPrint(r):
			if r > 0xffff {
				sb.WriteString(`\U` + leftPad(strconv.FormatInt(int64(r), 16), 8))
			} else if r > 0xff {
				sb.WriteString(`\u` + leftPad(strconv.FormatInt(int64(r), 16), 4))
			} else {
				sb.WriteString(`\x` + leftPad(strconv.FormatInt(int64(r), 16), 2))
			}
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte(q)
	return sb.String()
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// pyTruthy is bool(v).
func pyTruthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case float64:
		return t != 0
	case int:
		return t != 0
	case int64:
		return t != 0
	case intLit:
		return true // only out-of-range ints are kept as text
	case []any:
		return len(t) > 0
	case []string:
		return len(t) > 0
	case *obj:
		return t.len() > 0
	}
	return true
}

// pyNumber reports v as an exact number when it is a Python int, float or bool.
func pyNumber(v any) (*big.Float, bool) {
	f := new(big.Float).SetPrec(0)
	switch t := v.(type) {
	case bool:
		if t {
			return f.SetInt64(1), true
		}
		return f.SetInt64(0), true
	case int:
		return f.SetInt64(int64(t)), true
	case int64:
		return f.SetInt64(t), true
	case intLit:
		n, ok := new(big.Int).SetString(string(t), 10)
		if !ok {
			return nil, false
		}
		return f.SetInt(n), true
	case float64:
		if math.IsNaN(t) {
			return nil, false
		}
		return f.SetFloat64(t), true
	}
	return nil, false
}

// pyLess is a < b for numbers; NaN and non-numbers compare false, as in Python.
func pyLess(a, b any) bool {
	x, ok1 := pyNumber(a)
	y, ok2 := pyNumber(b)
	return ok1 && ok2 && x.Cmp(y) < 0
}

// pyEqual is a == b.
func pyEqual(a, b any) bool {
	if x, ok := pyNumber(a); ok {
		y, ok := pyNumber(b)
		return ok && x.Cmp(y) == 0
	}
	switch t := a.(type) {
	case nil:
		return b == nil
	case string:
		s, ok := b.(string)
		return ok && s == t
	case []any:
		u, ok := b.([]any)
		if !ok || len(u) != len(t) {
			return false
		}
		for i := range t {
			if !pyEqual(t[i], u[i]) {
				return false
			}
		}
		return true
	case *obj:
		u, ok := b.(*obj)
		if !ok || u.len() != t.len() {
			return false
		}
		for _, k := range t.keys {
			w, ok := u.get(k)
			if !ok || !pyEqual(t.at(k), w) {
				return false
			}
		}
		return true
	}
	return false
}

// pyInt is int(v) for a JSON value.
func pyInt(v any) (any, *pyExc) {
	switch t := v.(type) {
	case bool:
		if t {
			return int64(1), nil
		}
		return int64(0), nil
	case int:
		return int64(t), nil
	case int64, intLit:
		return t, nil
	case float64:
		return floatToInt(t)
	case string:
		return strToInt(t)
	}
	return nil, newExc("TypeError", "int() argument must be a string, a bytes-like object or a real number, not '"+pyTypeName(v)+"'")
}

func floatToInt(f float64) (any, *pyExc) {
	switch {
	case math.IsNaN(f):
		return nil, newExc("ValueError", "cannot convert float NaN to integer")
	case math.IsInf(f, 0):
		return nil, newExc("OverflowError", "cannot convert float infinity to integer")
	}
	t := math.Trunc(f)
	if math.Abs(t) < 1<<62 {
		return int64(t), nil
	}
	n, _ := new(big.Float).SetFloat64(t).Int(nil)
	return intFromText(n.String()), nil
}

func strToInt(s string) (any, *pyExc) {
	t := strings.TrimFunc(s, unicode.IsSpace)
	digits, ok := stripUnderscores(strings.TrimLeft(t, "+-"))
	sign := ""
	if strings.HasPrefix(t, "-") {
		sign = "-"
	}
	if ok && len(t)-len(strings.TrimLeft(t, "+-")) <= 1 && digits != "" && allDigits(digits) {
		n, _ := new(big.Int).SetString(sign+digits, 10)
		return intFromText(n.String()), nil
	}
	return nil, newExc("ValueError", "invalid literal for int() with base 10: "+pyQuote(s))
}

// stripUnderscores removes single underscores between digits, as Python allows.
func stripUnderscores(s string) (string, bool) {
	if !strings.Contains(s, "_") {
		return s, true
	}
	if strings.HasPrefix(s, "_") || strings.HasSuffix(s, "_") || strings.Contains(s, "__") {
		return "", false
	}
	return strings.ReplaceAll(s, "_", ""), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pyFloat is float(v) for a JSON value.
func pyFloat(v any) (float64, *pyExc) {
	switch t := v.(type) {
	case bool:
		if t {
			return 1, nil
		}
		return 0, nil
	case int:
		return float64(t), nil
	case int64:
		return float64(t), nil
	case intLit:
		f, _ := strconv.ParseFloat(string(t), 64)
		if math.IsInf(f, 0) {
			return 0, newExc("OverflowError", "int too large to convert to float")
		}
		return f, nil
	case float64:
		return t, nil
	case string:
		return strToFloat(t)
	}
	return 0, newExc("TypeError", "float() argument must be a string or a real number, not '"+pyTypeName(v)+"'")
}

func strToFloat(s string) (float64, *pyExc) {
	bad := newExc("ValueError", "could not convert string to float: "+pyQuote(s))
	t := strings.TrimFunc(s, unicode.IsSpace)
	body := strings.TrimLeft(t, "+-")
	if len(t)-len(body) > 1 || body == "" {
		return 0, bad
	}
	switch strings.ToLower(body) {
	case "inf", "infinity", "nan":
		f, _ := strconv.ParseFloat(t, 64)
		return f, nil
	}
	if strings.ContainsAny(body, "xXpP") || !strings.ContainsAny(body[:1], "0123456789.") {
		return 0, bad
	}
	clean, ok := stripUnderscores(t)
	if !ok {
		return 0, bad
	}
	f, err := strconv.ParseFloat(clean, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return f, nil
		}
		return 0, bad
	}
	return f, nil
}

// goInt reads a validated Python int as a Go int, saturating huge values.
func goInt(v any) int {
	switch t := v.(type) {
	case int:
		return t
	case int64:
		if t > math.MaxInt32 {
			return math.MaxInt32
		}
		if t < math.MinInt32 {
			return math.MinInt32
		}
		return int(t)
	case intLit:
		if strings.HasPrefix(string(t), "-") {
			return math.MinInt32
		}
		return math.MaxInt32
	case float64:
		return int(t)
	case bool:
		if t {
			return 1
		}
	}
	return 0
}
