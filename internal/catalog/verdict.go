package catalog

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// problem says why the prompt cannot run; nil when full, the catalogues
// that can run it, is not empty.
func (c *checker) problem(full set, matched []Member) *Problem {
	var p *Problem
	switch {
	case len(c.unknownClass) > 0:
		id := c.unknownClass[0]
		p = &Problem{Field: "workflow", Type: ProblemInvalidPrompt,
			Message: "Cannot execute because node " + c.req.Prompt[id].ClassType + " does not exist.",
			Details: "Node ID '#" + id + "'"}
	case len(c.badParams) > 0:
		p = &Problem{Field: "params." + c.badParams[0], Type: ProblemInvalidParams,
			Message: "Params name an input their node does not have", Details: c.paramDetails()}
	case len(c.outputs) == 0:
		p = &Problem{Field: "workflow", Type: ProblemNoOutputs, Message: "Prompt has no outputs"}
	case len(c.valid) == 0 && c.anyUnionFailure():
		p = &Problem{Field: "workflow", Type: ProblemOutputsFailed, Message: "Prompt outputs failed validation",
			Details: c.outputDetails()}
	case full.empty():
		p = &Problem{Field: "workflow", Type: ProblemNoCapableInstance,
			Message: "No single instance can run this workflow"}
		p.Catalogs = c.catalogProblems(matched)
		p.Details = catalogDetails(p.Catalogs)
	default:
		return nil
	}
	p.NodeErrors = c.nodeErrors()
	return p
}

func (c *checker) anyUnionFailure() bool {
	for _, o := range c.outputs {
		if !c.results[o].unionOK {
			return true
		}
	}
	return false
}

func (c *checker) paramDetails() string {
	var lines []string
	for _, id := range c.ids {
		for _, e := range c.union[id] {
			if e.Type == ErrUnknownInput {
				lines = append(lines, e.Details)
			}
		}
	}
	if more := len(c.badParams) - len(lines); more > 0 {
		lines = append(lines, "and "+strconv.Itoa(more)+" more")
	}
	return strings.Join(lines, "\n")
}

// outputDetails is ComfyUI's details of prompt_outputs_failed_validation:
// the errors of the failing output nodes themselves, one per line.
func (c *checker) outputDetails() string {
	var lines []string
	for _, o := range c.outputs {
		for _, e := range c.union[o] {
			lines = append(lines, e.Message+": "+e.Details)
		}
	}
	return strings.Join(lines, "\n")
}

// nodeErrors is node_errors of the union's errors. Each output's
// dependent nodes get it in dependent_outputs (for the first
// maxDependentWalks outputs: each costs a walk of the graph).
func (c *checker) nodeErrors() map[string]*NodeError {
	out := make(map[string]*NodeError, len(c.union))
	for id, errs := range c.union {
		out[id] = &NodeError{Errors: errs, DependentOutputs: []string{}, ClassType: c.req.Prompt[id].ClassType}
	}
	for i, o := range c.outputs {
		if i == maxDependentWalks {
			break
		}
		seen := map[string]bool{}
		stack := []string{o}
		for len(stack) > 0 {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[id] {
				continue
			}
			seen[id] = true
			if e := out[id]; e != nil {
				e.DependentOutputs = append(e.DependentOutputs, o)
			}
			if r := c.results[id]; r != nil {
				stack = append(stack, r.links...)
			}
		}
	}
	return out
}

// catalogProblems lists, for each catalogue the check used, its
// instances and the errors it alone has.
func (c *checker) catalogProblems(matched []Member) []CatalogProblem {
	var out []CatalogProblem
	for _, n := range c.allowed.members() {
		if len(out) == maxCatalogProblems {
			break
		}
		cp := CatalogProblem{Hash: c.ix.hashes[n], NodeErrors: map[string]*NodeError{}}
		for _, m := range matched {
			if m.Catalog != nil && m.Hash == cp.Hash {
				cp.Instances = append(cp.Instances, m.InstanceID)
			}
		}
		for _, f := range c.fails {
			if !f.cats.has(n) {
				continue
			}
			ne := cp.NodeErrors[f.node]
			if ne == nil {
				ne = &NodeError{DependentOutputs: []string{}, ClassType: c.req.Prompt[f.node].ClassType}
				cp.NodeErrors[f.node] = ne
			}
			ne.Errors = append(ne.Errors, f.err)
		}
		out = append(out, cp)
	}
	return out
}

// catalogDetails says in one line what each catalogue lacks (its first error).
func catalogDetails(cps []CatalogProblem) string {
	var parts []string
	for _, cp := range cps {
		for _, id := range slices.Sorted(maps.Keys(cp.NodeErrors)) {
			ne := cp.NodeErrors[id]
			e := ne.Errors[0]
			parts = append(parts, strings.Join(cp.Instances, ", ")+": node "+id+" ("+ne.ClassType+"): "+e.Message+": "+e.Details)
			break
		}
	}
	return strings.Join(parts, "; ")
}
