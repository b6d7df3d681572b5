package comfy

import (
	"cmp"
	"encoding/json"
	"math"
	"strings"
)

// Progress turns one run's events into a percentage of the whole workflow
// and says where the run is (see Position).
//
// Work is counted in units: a node is 1 unit, except that a node reporting
// steps (progress value/max; samplers do) is max units, so a 30-step
// sampler outweighs the six quick nodes around it. A sampler's steps are
// known before it starts when the prompt gives them (see NewProgress).
// Nodes that execution_cached lists are left out: they are done before the
// run starts. A node counts as done once the next node starts (executing or
// progress for another node) or progress_state reports it finished; the
// running node adds its fraction value/max.
//
// When the work changes size (a node reports more or fewer steps than
// expected, nodes turn out cached), the percentage goes on from where it
// is, spread over the work left, so it never goes down and never stalls.
// It stays at most 99: 100 is for the caller to set when the run has
// succeeded and its outputs are safe.
//
// Feed it only the events of the tracked prompt (events without a prompt id,
// such as the executing frame replayed on reconnect, may be fed too). It is
// not safe for concurrent use.
type Progress struct {
	plan     map[string]planNode
	weight   map[string]float64 // units of each node known so far
	reported map[string]bool    // nodes whose steps came from an event, not the prompt
	cached   map[string]bool
	finished map[string]bool
	current  string  // the node running now, "" before the first
	frac     float64 // of the current node, 0..1
	at       Position

	// The percentage is anchorPct at anchorUnits units done and grows
	// linearly to 100 at the total; both move when the total changes.
	anchorPct, anchorUnits float64
	exact                  float64 // the percentage reached, unrounded
}

// Position is where a run is: the node running and its step counter.
type Position struct {
	// NodeID is the node running, as the prompt names it (ComfyUI's
	// display node for nodes it expanded); "" before the first node starts.
	NodeID string
	// ClassType and Title are the node's class_type and _meta.title in the
	// prompt; "" when the prompt does not say.
	ClassType, Title string
	// Value and Max are the node's step counter (Value of Max); both 0 when
	// the node reports none.
	Value, Max int
}

// planNode is what the prompt says about one node.
type planNode struct {
	class, title string
	steps        int // the steps its progress bar is expected to count; 0 unknown
}

// maxSteps bounds a step count taken from a prompt or an event, so that one
// bogus value cannot swamp every other node.
const maxSteps = 10_000

// maxUnknownNodes bounds how many node ids that the prompt does not have
// (nodes ComfyUI expanded) a run keeps state for.
const maxUnknownNodes = 10_000

// NewProgress tracks a run of prompt, an API-format prompt
// ({id: {class_type, inputs, _meta: {title}}}). Each node is 1 unit, a
// sampler (a class whose name contains "Sampler") with a literal steps
// input, or with sigmas from a node with one, is that many. A prompt that
// cannot be decoded is tracked without knowing its nodes: the position is
// reported, the percentage stays 0 until execution_success makes it 99.
func NewProgress(prompt json.RawMessage) *Progress {
	p := &Progress{
		plan: parsePlan(prompt), weight: map[string]float64{}, reported: map[string]bool{},
		cached: map[string]bool{}, finished: map[string]bool{},
	}
	for id, n := range p.plan {
		p.weight[id] = float64(max(n.steps, 1))
	}
	return p
}

// Percent returns the current percentage, 0..99.
func (p *Progress) Percent() int { return min(int(p.exact), 99) }

// Position returns where the run is.
func (p *Progress) Position() Position { return p.at }

// Apply updates the progress with ev. It returns the percentage and whether
// the percentage or the position changed.
func (p *Progress) Apply(ev Event) (percent int, changed bool) {
	pct, at := p.Percent(), p.at
	switch ev.Type {
	case EventExecutionCached:
		p.applyCached(ev.Nodes)
	case EventExecuting:
		p.start(cmp.Or(ev.DisplayNode, ev.Node))
	case EventProgress:
		p.applyStep(ev)
	case EventProgressState:
		p.applyStates(ev.NodeStates)
	case EventExecutionSuccess:
		p.exact = max(p.exact, 99)
	}
	p.compute()
	return p.Percent(), p.Percent() != pct || p.at != at
}

func (p *Progress) applyCached(nodes []string) {
	p.resize(func() {
		for _, id := range nodes {
			p.cached[id] = true
		}
	})
}

// start marks node as running and the previous one as done.
func (p *Progress) start(node string) {
	if node == "" || node == p.current {
		return
	}
	if p.current != "" && p.tracks(p.current) {
		p.finished[p.current] = true
	}
	p.current, p.frac = node, 0
	n := p.plan[node]
	p.at = Position{NodeID: node, ClassType: n.class, Title: n.title}
}

func (p *Progress) applyStep(ev Event) {
	p.start(ev.Node)
	if ev.Max <= 0 || p.current == "" {
		return
	}
	p.setWeight(p.current, ev.Max)
	p.at.Value, p.at.Max = min(max(ev.Value, 0), ev.Max), ev.Max
	p.frac = max(p.frac, clamp01(float64(ev.Value)/float64(ev.Max)))
}

// applyStates reads progress_state: the steps of running nodes first (so
// the work is resized before anything else moves), then finished nodes,
// then the current node's counter.
func (p *Progress) applyStates(states map[string]NodeState) {
	for id, st := range states {
		if st.State == "running" && st.Max > 1 && !p.finished[id] {
			p.setWeight(id, int(min(st.Max, maxSteps)))
		}
	}
	for id, st := range states {
		if st.State == "finished" && p.tracks(id) {
			p.finished[id] = true
		}
	}
	st, ok := states[p.current]
	if !ok || st.Max <= 0 {
		return
	}
	if st.State == "running" {
		p.frac = max(p.frac, clamp01(st.Value/st.Max))
	}
	if st.Max > 1 { // max 1 is the default of a node without steps
		top := min(st.Max, math.MaxInt32)
		p.at.Value, p.at.Max = int(min(max(st.Value, 0), top)), int(top)
	}
}

// setWeight sets node's units to steps (bounded) as a node reports them:
// the first report replaces the prompt's estimate, later ones (a second
// progress bar in the same node) only raise it.
func (p *Progress) setWeight(node string, steps int) {
	if !p.tracks(node) {
		return
	}
	w := float64(min(max(steps, 1), maxSteps))
	if p.reported[node] {
		w = max(w, p.weight[node])
	}
	p.reported[node] = true
	if p.weight[node] != w {
		p.resize(func() { p.weight[node] = w })
	}
}

// resize applies change, which changes the size of the work, so that the
// percentage goes on from where it is: the units done so far stand for the
// percentage reached, whatever the work now totals.
func (p *Progress) resize(change func()) {
	p.compute()
	change()
	p.anchorPct, p.anchorUnits = p.exact, min(p.units(), p.total())
}

// tracks reports whether node's state may be kept: a node of the prompt,
// or one of a bounded number of others.
func (p *Progress) tracks(node string) bool {
	_, ok := p.plan[node]
	return ok || len(p.finished)+len(p.reported) < 2*len(p.plan)+maxUnknownNodes
}

// total is the units of the nodes to run.
func (p *Progress) total() float64 {
	var sum float64
	for id := range p.plan {
		if !p.cached[id] {
			sum += p.weight[id]
		}
	}
	return sum
}

// units is the units done: finished nodes and the current node's fraction.
// Nodes the prompt does not have (expanded ones) count 1 unit or their steps.
func (p *Progress) units() float64 {
	var sum float64
	for id := range p.finished {
		if !p.cached[id] {
			sum += p.unitsOf(id)
		}
	}
	if p.current != "" && !p.finished[p.current] && !p.cached[p.current] {
		sum += p.unitsOf(p.current) * p.frac
	}
	return sum
}

func (p *Progress) unitsOf(id string) float64 {
	if w, ok := p.weight[id]; ok {
		return w
	}
	return 1
}

// compute raises the percentage to what the units done are worth.
func (p *Progress) compute() {
	total := p.total()
	if total <= p.anchorUnits {
		return // nothing left to run (all cached): execution_success says 99
	}
	units := min(p.units(), total)
	pct := p.anchorPct + (100-p.anchorPct)*(units-p.anchorUnits)/(total-p.anchorUnits)
	p.exact = max(p.exact, pct)
}

func clamp01(f float64) float64 {
	if f != f || f < 0 { // NaN or negative
		return 0
	}
	return min(f, 1)
}

// parsePlan reads the nodes of an API-format prompt: class, title and the
// steps of samplers. Ill-typed parts are left zero.
func parsePlan(prompt json.RawMessage) map[string]planNode {
	type wireNode struct {
		ClassType string                     `json:"class_type"`
		Inputs    map[string]json.RawMessage `json:"inputs"`
		Meta      struct {
			Title string `json:"title"`
		} `json:"_meta"`
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(prompt, &raw)
	nodes := make(map[string]wireNode, len(raw))
	for id, r := range raw {
		var n wireNode
		_ = json.Unmarshal(r, &n) // an ill-typed field leaves the rest decoded
		nodes[id] = n
	}
	plan := make(map[string]planNode, len(nodes))
	for id, n := range nodes {
		pn := planNode{class: n.ClassType, title: n.Meta.Title}
		if strings.Contains(n.ClassType, "Sampler") {
			pn.steps = literalSteps(n.Inputs["steps"])
			if from, ok := linkFrom(n.Inputs["sigmas"]); ok && pn.steps == 0 {
				pn.steps = literalSteps(nodes[from].Inputs["steps"])
			}
		}
		plan[id] = pn
	}
	return plan
}

// literalSteps reads a positive integer input, bounded; 0 for anything else
// (a link, a string).
func literalSteps(raw json.RawMessage) int {
	var f float64
	if json.Unmarshal(raw, &f) != nil || f < 1 {
		return 0
	}
	return int(min(f, maxSteps))
}

// linkFrom reads a link input ["<node id>", <slot>].
func linkFrom(raw json.RawMessage) (string, bool) {
	var l []json.RawMessage
	if json.Unmarshal(raw, &l) != nil || len(l) != 2 {
		return "", false
	}
	var id string
	return id, json.Unmarshal(l[0], &id) == nil && id != ""
}
