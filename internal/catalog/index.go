package catalog

import (
	"encoding/json"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// Member is one configured instance as the Index sees it.
type Member struct {
	InstanceID string
	Labels     map[string]string
	// Hash and Catalog are the instance's catalogue; Catalog nil when it has
	// not been read yet.
	Hash    string
	Catalog *Catalog
}

// Index is the merged view of a fleet's catalogues, built once per set of
// members and read concurrently by Check. Catalogues are numbered; a set of
// catalogues is a bit set over those numbers.
type Index struct {
	members []Member
	hashes  []string       // catalogue n's hash
	byHash  map[string]int // hash -> n
	classes map[string]*classEntry
}

// classEntry is one class across the catalogues.
type classEntry struct {
	has    set // catalogues offering the class
	output set // catalogues where it is an output node
	order  []string
	inputs map[string]*inputEntry
}

// inputEntry is one input of a class across the catalogues that declare it.
type inputEntry struct {
	declared set
	required set
	variants []*variant // distinct specs, each with the catalogues that have it
}

// variant is one spec of an input and the catalogues declaring it so.
type variant struct {
	in      *Input
	cats    set
	options map[string]bool // optionKey of each option, for combos that are checked
}

// NewIndex merges the catalogues of members. Members with the same hash
// share one catalogue; members without a catalogue only count for labels.
func NewIndex(members []Member) *Index {
	ix := &Index{members: slices.Clone(members), byHash: map[string]int{}, classes: map[string]*classEntry{}}
	sigs := map[string]*variant{} // class, input and spec -> variant
	for _, m := range members {
		if m.Catalog == nil {
			continue
		}
		if _, seen := ix.byHash[m.Hash]; seen {
			continue
		}
		n := len(ix.hashes)
		ix.byHash[m.Hash] = n
		ix.hashes = append(ix.hashes, m.Hash)
		for _, name := range m.Catalog.ClassNames() {
			ix.addClass(n, name, m.Catalog.Classes[name], sigs)
		}
	}
	return ix
}

func (ix *Index) addClass(n int, name string, cl *Class, sigs map[string]*variant) {
	ce := ix.classes[name]
	if ce == nil {
		ce = &classEntry{inputs: map[string]*inputEntry{}}
		ix.classes[name] = ce
	}
	ce.has = ce.has.with(n)
	if cl.OutputNode {
		ce.output = ce.output.with(n)
	}
	for i := range cl.Inputs {
		in := &cl.Inputs[i]
		ie := ce.inputs[in.Name]
		if ie == nil {
			ie = &inputEntry{}
			ce.inputs[in.Name] = ie
			ce.order = append(ce.order, in.Name)
		}
		ie.declared = ie.declared.with(n)
		if in.Required {
			ie.required = ie.required.with(n)
		}
		spec, _ := json.Marshal(in)
		sig := name + "\x00" + string(spec)
		v := sigs[sig]
		if v == nil {
			v = newVariant(in)
			sigs[sig] = v
			ie.variants = append(ie.variants, v)
		}
		v.cats = v.cats.with(n)
	}
}

func newVariant(in *Input) *variant {
	v := &variant{in: in}
	if in.Type == TypeCombo && !in.Open {
		v.options = make(map[string]bool, len(in.Options))
		for _, o := range in.Options {
			k, _ := optionKey(o)
			v.options[k] = true
		}
	}
	return v
}

// Hashes lists the catalogue hashes the index holds.
func (ix *Index) Hashes() []string { return slices.Clone(ix.hashes) }

// Known reports whether any member's catalogue is known.
func (ix *Index) Known() bool { return len(ix.hashes) > 0 }

// optionKey is how combo membership compares values: strings by text,
// numbers by value (1 and 1.0 are equal, as in Python), booleans and null by
// themselves. Lists and objects have no key.
func optionKey(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return "s" + t, true
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return "n" + t.String(), true
		}
		return "n" + strconv.FormatFloat(f, 'g', -1, 64), true
	case float64:
		return "n" + strconv.FormatFloat(t, 'g', -1, 64), true
	case bool:
		return "b" + strconv.FormatBool(t), true
	case nil:
		return "z", true
	}
	return "", false
}

// Matches reports whether labels has every key of requires with the same value.
func Matches(labels, requires map[string]string) bool {
	for k, v := range requires {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// FormatLabels writes labels as "k=v, k=v", sorted by key.
func FormatLabels(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ", ")
}

// set is a bit set of catalogue numbers. The zero value is empty. Methods
// never modify their receiver, so sets can be shared.
type set []uint64

func (s set) with(n int) set {
	w := n / 64
	out := make(set, max(len(s), w+1))
	copy(out, s)
	out[w] |= 1 << (n % 64)
	return out
}

func (s set) has(n int) bool { return n/64 < len(s) && s[n/64]&(1<<(n%64)) != 0 }

func (s set) and(o set) set {
	out := make(set, min(len(s), len(o)))
	for i := range out {
		out[i] = s[i] & o[i]
	}
	return out
}

func (s set) or(o set) set {
	if len(s) < len(o) {
		s, o = o, s
	}
	out := slices.Clone(s)
	for i := range o {
		out[i] |= o[i]
	}
	return out
}

// minus is s without the members of o.
func (s set) minus(o set) set {
	out := slices.Clone(s)
	for i := range min(len(s), len(o)) {
		out[i] &^= o[i]
	}
	return out
}

func (s set) empty() bool {
	for _, w := range s {
		if w != 0 {
			return false
		}
	}
	return true
}

// members lists the numbers in s, ascending.
func (s set) members() []int {
	var out []int
	for i, w := range s {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			out = append(out, i*64+b)
			w &^= 1 << b
		}
	}
	return out
}
