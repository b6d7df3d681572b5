package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// anyDecoder is implemented by the custom types: they decode themselves
// from a generic YAML or JSON value (string, number, list or nil), and from
// the strings of Set.
type anyDecoder interface {
	decodeAny(x any) error
}

var (
	_ anyDecoder = (*Duration)(nil)
	_ anyDecoder = (*Millis)(nil)
	_ anyDecoder = (*Ports)(nil)
	_ anyDecoder = (*Prefixes)(nil)
)

func (d *Duration) decodeAny(x any) error {
	s, ok := x.(string)
	if !ok {
		return errors.New(`must be a duration string like "24h"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// String formats d like time.Duration without trailing zero units: "24h",
// "1h30m", "90s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error { return unmarshalJSONAny(b, d) }

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return unmarshalYAMLAny(n, d) }

func (m *Millis) decodeAny(x any) error {
	if s, ok := x.(string); ok {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			v, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("invalid duration %q: want milliseconds (30000) or a duration (\"30s\")", s)
			}
			*m = Millis(v)
			return nil
		}
		x = json.Number(s)
	}
	n, ok := toInt64(x)
	if !ok {
		return errors.New("must be a whole number of milliseconds")
	}
	if n > math.MaxInt64/int64(time.Millisecond) || n < math.MinInt64/int64(time.Millisecond) {
		return fmt.Errorf("%d ms is out of range", n)
	}
	*m = Millis(time.Duration(n) * time.Millisecond)
	return nil
}

// Milliseconds returns m as integer milliseconds.
func (m Millis) Milliseconds() int64 { return time.Duration(m).Milliseconds() }

// MarshalJSON writes m as integer milliseconds.
func (m Millis) MarshalJSON() ([]byte, error) { return json.Marshal(m.Milliseconds()) }

// UnmarshalJSON reads integer milliseconds or a duration string.
func (m *Millis) UnmarshalJSON(b []byte) error { return unmarshalJSONAny(b, m) }

// MarshalYAML writes m as integer milliseconds.
func (m Millis) MarshalYAML() (any, error) { return m.Milliseconds(), nil }

// UnmarshalYAML reads integer milliseconds or a duration string.
func (m *Millis) UnmarshalYAML(n *yaml.Node) error { return unmarshalYAMLAny(n, m) }

func (p *Ports) decodeAny(x any) error {
	switch v := x.(type) {
	case string:
		ports, err := ParsePorts(v)
		if err != nil {
			return err
		}
		*p = ports
		return nil
	case []any:
		ports := make(Ports, len(v))
		for i, e := range v {
			n, ok := toInt64(e)
			if !ok || n < math.MinInt32 || n > math.MaxInt32 {
				return fmt.Errorf("ports[%d]: must be a port number", i)
			}
			ports[i] = int(n)
		}
		*p = ports
		return nil
	}
	n, ok := toInt64(x)
	if !ok || n < math.MinInt32 || n > math.MaxInt32 {
		return errors.New(`must be a list of ports, a port, or a range like "8001-8008"`)
	}
	*p = Ports{int(n)}
	return nil
}

// ParsePorts parses a port list written as a string: "8001", "8001-8008",
// "8001,8002" or a mix ("8001-8003, 8010"). Ports must be 1..65535 and a
// range must not be reversed.
func ParsePorts(s string) (Ports, error) {
	var out Ports
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return nil, err
			}
			if last < first {
				return nil, fmt.Errorf("range %q is reversed", part)
			}
		}
		for p := first; p <= last; p++ {
			out = append(out, p)
		}
	}
	return out, nil
}

func parsePort(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range 1..65535", n)
	}
	return n, nil
}

// MarshalJSON writes p as a list (an empty list rather than null).
func (p Ports) MarshalJSON() ([]byte, error) {
	if p == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]int(p))
}

// UnmarshalJSON reads a list, a port, or a range string.
func (p *Ports) UnmarshalJSON(b []byte) error { return unmarshalJSONAny(b, p) }

// MarshalYAML writes p as a list.
func (p Ports) MarshalYAML() (any, error) { return []int(p), nil }

// UnmarshalYAML reads a list, a port, or a range string.
func (p *Ports) UnmarshalYAML(n *yaml.Node) error { return unmarshalYAMLAny(n, p) }

func (p *Prefixes) decodeAny(x any) error {
	var list []string
	switch v := x.(type) {
	case string:
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				list = append(list, part)
			}
		}
	case []any:
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("[%d]: must be a CIDR string like \"10.0.0.0/8\"", i)
			}
			list = append(list, s)
		}
	default:
		return errors.New(`must be a list of CIDRs like ["10.0.0.0/8", "127.0.0.1"]`)
	}
	var out Prefixes
	for _, s := range list {
		pfx, err := ParsePrefix(s)
		if err != nil {
			return err
		}
		out = append(out, pfx)
	}
	*p = out
	return nil
}

// ParsePrefix parses a CIDR ("10.0.0.0/8") or a bare address (one host).
// IPv4-mapped IPv6 addresses are taken as IPv4, and host bits are dropped.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a CIDR like 10.0.0.0/8", s)
	}
	if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), nil
}

// Contains reports whether one of the prefixes holds addr.
func (p Prefixes) Contains(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, pfx := range p {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

func (p Prefixes) strings() []string {
	out := make([]string, len(p))
	for i, pfx := range p {
		out[i] = pfx.String()
	}
	return out
}

// MarshalJSON writes p as a list of CIDRs (an empty list rather than null).
func (p Prefixes) MarshalJSON() ([]byte, error) { return json.Marshal(p.strings()) }

// UnmarshalJSON reads a list of CIDRs or a comma-separated string.
func (p *Prefixes) UnmarshalJSON(b []byte) error { return unmarshalJSONAny(b, p) }

// MarshalYAML writes p as a list of CIDRs.
func (p Prefixes) MarshalYAML() (any, error) { return p.strings(), nil }

// UnmarshalYAML reads a list of CIDRs or a comma-separated string.
func (p *Prefixes) UnmarshalYAML(n *yaml.Node) error { return unmarshalYAMLAny(n, p) }

// unmarshalJSONAny decodes b generically and hands it to d; null leaves d
// as it is.
func unmarshalJSONAny(b []byte, d anyDecoder) error {
	x, err := decodeJSON(b)
	if err != nil || x == nil {
		return err
	}
	return d.decodeAny(x)
}

// unmarshalYAMLAny decodes n generically and hands it to d; null leaves d
// as it is.
func unmarshalYAMLAny(n *yaml.Node, d anyDecoder) error {
	var x any
	if err := n.Decode(&x); err != nil || x == nil {
		return err
	}
	if err := d.decodeAny(x); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// decodeJSON decodes one JSON value generically, numbers as json.Number.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode JSON: data after the value")
	}
	return x, nil
}

// toInt64 converts a generic integer (from YAML or JSON) to int64.
func toInt64(x any) (int64, bool) {
	switch v := x.(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		return int64(v), v <= math.MaxInt64
	case float64:
		return int64(v), v == math.Trunc(v) && math.Abs(v) < 1<<63
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}
