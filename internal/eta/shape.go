package eta

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// A shape names the structure of a workflow: its nodes' class types and the
// links between them, not the values of their inputs. The tasks of one
// workflow template share a shape whatever their texts, seeds, sizes or
// models, so durations observed for some of them predict the others.
//
// It is the hex of the first 16 bytes of the sha256 of a canonical listing
// (nodes by id, each with its class type and its links by input name). A
// link is an input whose value is [source node id, output index] naming a
// node of the workflow, as ComfyUI reads it.

// node is a workflow node as an API-format prompt ("class_type") or a
// placement requirement ("class") spells it.
type node struct {
	ClassType string                     `json:"class_type"`
	Class     string                     `json:"class"`
	Inputs    map[string]json.RawMessage `json:"inputs"`
}

// ShapeOfWorkflow is the shape of an API-format workflow.
func ShapeOfWorkflow(raw []byte) (string, error) {
	var nodes map[string]node
	if err := json.Unmarshal(raw, &nodes); err != nil {
		return "", fmt.Errorf("eta: shape of workflow: %w", err)
	}
	return shape(nodes), nil
}

// ShapeOfRequirement is the shape of the workflow a placement requirement
// was made from (catalog.Requirement's Data): the same as ShapeOfWorkflow
// of that workflow, since a requirement keeps every node's class and links.
func ShapeOfRequirement(data []byte) (string, error) {
	var req struct {
		Prompt map[string]node `json:"prompt"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return "", fmt.Errorf("eta: shape of requirement: %w", err)
	}
	return shape(req.Prompt), nil
}

func shape(nodes map[string]node) string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		n := nodes[id]
		class := n.ClassType
		if class == "" {
			class = n.Class
		}
		b.WriteString(strconv.Quote(id))
		b.WriteString(strconv.Quote(class))
		for _, in := range slices.Sorted(maps.Keys(n.Inputs)) {
			from, out, ok := link(n.Inputs[in])
			if _, exists := nodes[from]; !ok || !exists {
				continue
			}
			b.WriteString(" " + strconv.Quote(in) + "<" + strconv.Quote(from) + ":" + strconv.Itoa(out))
		}
		b.WriteByte('\n')
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:16])
}

// link reads an input's value as a link: [node id, output index].
func link(raw json.RawMessage) (from string, out int, ok bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return "", 0, false
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) != nil || len(arr) != 2 {
		return "", 0, false
	}
	if json.Unmarshal(arr[0], &from) != nil {
		return "", 0, false
	}
	var f float64
	if json.Unmarshal(arr[1], &f) != nil || f != float64(int(f)) {
		return "", 0, false
	}
	return from, int(f), true
}
