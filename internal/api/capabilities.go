package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/workflow"
)

// maxRequires bounds the labels a task may require.
const maxRequires = 32

// checkRequires checks the form of a task's "requires": label names and
// values as in the config's servers[].labels.
func checkRequires(requires map[string]string) error {
	if len(requires) > maxRequires {
		return fieldError("requires", "at most "+strconv.Itoa(maxRequires)+" labels")
	}
	for k, v := range requires {
		if !config.IsLabel(k) || !config.IsLabel(v) {
			return fieldError("requires", strconv.Quote(k)+": "+strconv.Quote(v)+
				" is not a label; names and values are 1..63 letters, digits, '-', '_' or '.'")
		}
	}
	return nil
}

// checkFleet validates a submission against the node catalogues of the
// instances whose labels match requires (fleet.Admit): a prompt no
// instance can run is refused now rather than failed at dispatch. When no
// matching instance's catalogue is known yet, only the labels are checked
// and the instance validates the prompt at dispatch. It returns the
// task's placement requirement.
func (s *Server) checkFleet(ctx context.Context, p workflow.Prompt, params []workflow.Param, requires map[string]string) (*store.CapParams, error) {
	req := &catalog.Request{Prompt: make(map[string]catalog.Node, len(p)), Params: make([]catalog.Param, len(params)), Requires: requires}
	for id, n := range p {
		req.Prompt[id] = catalog.Node{ClassType: n.ClassType, Title: n.Title(), Inputs: n.Inputs}
	}
	for i, prm := range params {
		req.Params[i] = catalog.Param{Key: prm.Key, NodeID: prm.NodeID, Input: prm.Input, Value: prm.Value, File: prm.File != nil}
	}
	a, err := s.deps.Fleet.Admit(ctx, req)
	if err != nil {
		return nil, err
	}
	if a.Verdict.Problem != nil {
		return nil, problemError(a.Verdict.Problem)
	}
	return a.Cap, nil
}

// problemData is the data of a refused submission: the fields of a task's
// error (type, message, nodeErrors, as a validation failure at dispatch
// shows them), the request field at fault, and for no_capable_instance what
// each catalogue lacks.
type problemData struct {
	Field      string                        `json:"field"`
	Type       string                        `json:"type"`
	Message    string                        `json:"message"`
	NodeErrors map[string]*catalog.NodeError `json:"nodeErrors"`
	Catalogs   []catalog.CatalogProblem      `json:"catalogs,omitempty"`
}

// problemError renders a catalogue problem as a 400: invalid_workflow for
// what is wrong with the workflow or its params on every instance,
// no_capable_instance when no single (matching) instance can run it.
func problemError(p *catalog.Problem) *Error {
	code := "invalid_workflow"
	if p.Type == catalog.ProblemNoCapableInstance || p.Type == catalog.ProblemNoMatchingLabels {
		code = "no_capable_instance"
	}
	msg := p.Message
	if p.Details != "" {
		msg += ": " + p.Details
	}
	nodeErrors := p.NodeErrors
	if nodeErrors == nil {
		nodeErrors = map[string]*catalog.NodeError{}
	}
	return &Error{Status: http.StatusBadRequest, Code: code, Message: p.Field + ": " + p.Sentence(),
		Data: problemData{Field: p.Field, Type: p.Type, Message: msg, NodeErrors: nodeErrors, Catalogs: p.Catalogs}}
}
