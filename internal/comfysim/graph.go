package comfysim

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
)

// graph is a validated prompt ready to run.
type graph struct {
	order   []string // node ids in prompt key order
	nodes   map[string]*gnode
	root    *obj   // the prompt object, values as validation left them
	encoded []byte // root in Python layout
}

type gnode struct {
	id     string
	class  string
	spec   *nodeSpec
	inputs *obj
}

func newGraph(cat *simCatalog, root *obj) *graph {
	g := &graph{order: root.keys, nodes: make(map[string]*gnode, root.len()), root: root, encoded: encodePy(root)}
	for _, id := range root.keys {
		n := root.sub(id)
		class, _ := n.str("class_type")
		spec, _ := cat.spec(class)
		inputs := n.sub("inputs")
		if inputs == nil {
			inputs = newObj()
		}
		g.nodes[id] = &gnode{id: id, class: class, spec: spec, inputs: inputs}
	}
	return g
}

// link reports whether v is a link as ComfyUI's is_link defines it.
func link(v any) (from string, slot int, ok bool) {
	a, isList := v.([]any)
	if !isList || len(a) != 2 {
		return "", 0, false
	}
	from, ok1 := a[0].(string)
	n, ok2 := a[1].(int64)
	return from, int(n), ok1 && ok2
}

// links returns the node's link inputs whose source exists, in input order.
func (g *graph) links(id string) []linkRef {
	var out []linkRef
	n := g.nodes[id]
	for _, name := range n.inputs.keys {
		if from, slot, ok := link(n.inputs.at(name)); ok && g.nodes[from] != nil {
			out = append(out, linkRef{input: name, from: from, slot: slot})
		}
	}
	return out
}

type linkRef struct {
	input string
	from  string
	slot  int
}

// signatures computes every node's cache key: its class, IS_CHANGED value
// and inputs, with links replaced by the key of the node they come from
// (ComfyUI's CacheKeySetInputSignature, as a hash).
func (g *graph) signatures(isChanged func(n *gnode) string) map[string]string {
	sigs := make(map[string]string, len(g.order))
	var sig func(id string, depth int) string
	sig = func(id string, depth int) string {
		if s, ok := sigs[id]; ok {
			return s
		}
		if depth > len(g.order) { // a cycle; the run will report it
			return "cycle:" + id
		}
		n := g.nodes[id]
		h := sha256.New()
		h.Write([]byte(n.class + "\x00" + isChanged(n) + "\x00"))
		names := append([]string(nil), n.inputs.keys...)
		sort.Strings(names)
		for _, name := range names {
			v := n.inputs.at(name)
			h.Write([]byte(name + "="))
			if from, slot, ok := link(v); ok && g.nodes[from] != nil {
				h.Write([]byte("@" + sig(from, depth+1) + "#" + strconv.Itoa(slot)))
			} else {
				h.Write(encodePy(v))
			}
			h.Write([]byte{0})
		}
		s := hex.EncodeToString(h.Sum(nil)[:16])
		sigs[id] = s
		return s
	}
	for _, id := range g.order {
		sig(id, 0)
	}
	return sigs
}

// execList is ComfyUI's ExecutionList (comfy_execution/graph.py): pending
// nodes in insertion order, block counts, and the UX-friendly pick of the
// next node (output nodes first, then nodes one or two links from one).
type execList struct {
	g          *graph
	cached     func(id string) bool
	pending    []string
	inPending  map[string]bool
	blockCount map[string]int
	blocking   map[string][]string // node -> nodes it blocks, insertion order
}

func newExecList(g *graph, cached func(string) bool) *execList {
	return &execList{g: g, cached: cached, inPending: map[string]bool{}, blockCount: map[string]int{}, blocking: map[string][]string{}}
}

// addNode is TopologicalSort.add_node: a depth-first walk from id over the
// links to uncached nodes, then the strong links in discovery order.
func (l *execList) addNode(id string) {
	stack := []string{id}
	var links [][2]string
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if l.inPending[cur] {
			continue
		}
		l.inPending[cur] = true
		l.pending = append(l.pending, cur)
		l.blockCount[cur] = 0
		l.blocking[cur] = nil
		for _, ln := range l.g.links(cur) {
			if !l.cached(ln.from) {
				stack = append(stack, ln.from)
			}
			links = append(links, [2]string{ln.from, cur})
		}
	}
	for _, ln := range links {
		l.addStrongLink(ln[0], ln[1])
	}
}

func (l *execList) addStrongLink(from, to string) {
	if l.cached(from) {
		return
	}
	l.addNode(from)
	for _, b := range l.blocking[from] {
		if b == to {
			return
		}
	}
	l.blocking[from] = append(l.blocking[from], to)
	l.blockCount[to]++
}

func (l *execList) empty() bool { return len(l.pending) == 0 }

// next picks the node to run, or reports a dependency cycle.
func (l *execList) next() (string, bool) {
	var ready []string
	for _, id := range l.pending {
		if l.blockCount[id] == 0 {
			ready = append(ready, id)
		}
	}
	if len(ready) == 0 {
		return "", false
	}
	return l.pick(ready), true
}

func (l *execList) isOutput(id string) bool { return l.g.nodes[id].spec.outputNode }

func (l *execList) pick(ready []string) string {
	for _, id := range ready {
		if l.isOutput(id) {
			return id
		}
	}
	for _, id := range ready {
		for _, b := range l.blocking[id] {
			if l.isOutput(b) {
				return id
			}
		}
	}
	for _, id := range ready {
		for _, b := range l.blocking[id] {
			for _, b2 := range l.blocking[b] {
				if l.isOutput(b2) {
					return id
				}
			}
		}
	}
	return ready[0]
}

// done is pop_node after a node completed.
func (l *execList) done(id string) {
	for i, p := range l.pending {
		if p == id {
			l.pending = append(l.pending[:i:i], l.pending[i+1:]...)
			break
		}
	}
	delete(l.inPending, id)
	for _, b := range l.blocking[id] {
		l.blockCount[b]--
	}
	delete(l.blocking, id)
}

// cycleNode blames a node of the cycle that blocks execution (first pending).
func (l *execList) cycleNode() string { return l.pending[0] }
