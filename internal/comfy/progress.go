package comfy

import (
	"encoding/json"
	"fmt"
)

// Progress turns one run's events into a percentage of the whole workflow.
//
// The nodes to run are the prompt's nodes minus those execution_cached lists.
// A node counts as done once the next node starts (executing or progress for
// another node) or progress_state reports it finished; the running node adds
// its fraction value/max from progress (samplers report steps). The result
// never goes down and stays at most 99: 100 is for the caller to set when the
// run has succeeded and its outputs are safe.
//
// Feed it only the events of the tracked prompt (events without a prompt id,
// such as the executing frame replayed on reconnect, may be fed too). It is
// not safe for concurrent use.
type Progress struct {
	total    int
	cached   map[string]bool
	finished map[string]bool
	current  string  // the node running now, "" before the first
	frac     float64 // of the current node, 0..1
	percent  int
}

// NewProgress tracks a run of a prompt with totalNodes nodes (see CountNodes).
func NewProgress(totalNodes int) *Progress {
	return &Progress{total: totalNodes, cached: map[string]bool{}, finished: map[string]bool{}}
}

// Percent returns the current percentage, 0..99.
func (p *Progress) Percent() int { return p.percent }

// Apply updates the progress with ev and returns the percentage and whether it changed.
func (p *Progress) Apply(ev Event) (percent int, changed bool) {
	switch ev.Type {
	case EventExecutionCached:
		for _, id := range ev.Nodes {
			p.cached[id] = true
		}
	case EventExecuting:
		p.start(ev.Node)
	case EventProgress:
		p.applyStep(ev)
	case EventProgressState:
		p.applyStates(ev.NodeStates)
	case EventExecutionSuccess:
		return p.raise(99)
	}
	return p.raise(p.compute())
}

// start marks node as running and the previous one as done.
func (p *Progress) start(node string) {
	if node == "" || node == p.current {
		return
	}
	if p.current != "" {
		p.finished[p.current] = true
	}
	p.current, p.frac = node, 0
}

func (p *Progress) applyStep(ev Event) {
	p.start(ev.Node)
	if ev.Max > 0 && (ev.Node == "" || ev.Node == p.current) {
		p.frac = clamp01(float64(ev.Value) / float64(ev.Max))
	}
}

func (p *Progress) applyStates(states map[string]NodeState) {
	for id, st := range states {
		if st.State == "finished" {
			p.finished[id] = true
		}
	}
	if st, ok := states[p.current]; ok && st.State == "running" && st.Max > 0 {
		p.frac = max(p.frac, clamp01(st.Value/st.Max))
	}
}

// compute is 100·(done + fraction of the current node)/(nodes to run), capped at 99.
func (p *Progress) compute() int {
	toRun := max(p.total-len(p.cached), 1)
	done := 0
	for id := range p.finished {
		if !p.cached[id] {
			done++
		}
	}
	units := float64(done)
	if p.current != "" && !p.finished[p.current] {
		units += p.frac
	}
	units = min(units, float64(toRun))
	return min(int(100*units/float64(toRun)), 99)
}

// raise moves the percentage up to pct (never down).
func (p *Progress) raise(pct int) (int, bool) {
	if pct <= p.percent {
		return p.percent, false
	}
	p.percent = pct
	return pct, true
}

func clamp01(f float64) float64 {
	if f != f || f < 0 { // NaN or negative
		return 0
	}
	return min(f, 1)
}

// CountNodes returns the number of nodes of an API-format prompt (its top-level keys).
func CountNodes(prompt json.RawMessage) (int, error) {
	var nodes map[string]json.RawMessage
	if err := json.Unmarshal(prompt, &nodes); err != nil {
		return 0, fmt.Errorf("comfy: count nodes: %w", err)
	}
	return len(nodes), nil
}
