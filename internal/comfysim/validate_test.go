package comfysim

import (
	"strings"
	"testing"
)

// Validation cases beyond the traced ones, with the shapes execution.py builds.

const okSave = `"9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "v"}}`

func emptyImage(inputs string) string {
	return `"1": {"class_type": "EmptyImage", "inputs": {` + inputs + `}}`
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	tests := []struct {
		name   string
		prompt string
		want   string // the response body, exactly
	}{
		{"bigger than max", `{` + emptyImage(`"width": 16385, "height": 8, "batch_size": 1, "color": 0`) + `, ` + okSave + `}`,
			`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"1": {"errors": [{"type": "value_bigger_than_max", "message": "Value 16385 bigger than max of 16384", "details": "width", "extra_info": {"input_name": "width", "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}], "received_value": 16385}}], "dependent_outputs": ["9"], "class_type": "EmptyImage"}}}`},
		{"float below min", `{` + emptyImage(`"width": 8, "height": 8, "batch_size": 1, "color": 0`) + `, "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 0.05}}, "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "v"}}}`,
			`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": {"2": {"errors": [{"type": "value_smaller_than_min", "message": "Value 0.05 smaller than min of 0.1", "details": "sigma", "extra_info": {"input_name": "sigma", "input_config": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}], "received_value": 0.05}}], "dependent_outputs": ["9"], "class_type": "ImageBlur"}}}`},
		{"bad linked input", `{` + emptyImage(`"width": 8, "height": 8, "batch_size": 1, "color": 0`) + `, "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0, 1], "filename_prefix": "v"}}}`,
			`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "Bad linked input, must be a length-2 list of [node_id, slot_index]: images", "extra_info": {}}, "node_errors": {"9": {"errors": [{"type": "bad_linked_input", "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]", "details": "images", "extra_info": {"input_name": "images", "input_config": ["IMAGE", {"tooltip": "The images to save."}], "received_value": ["1", 0, 1]}}], "dependent_outputs": ["9"], "class_type": "SaveImage"}}}`},
		{"return type mismatch", `{"1": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}}, ` + okSave + `}`,
			`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "Return type mismatch between linked nodes: images, received_type(MASK) mismatch input_type(IMAGE)", "extra_info": {}}, "node_errors": {"9": {"errors": [{"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes", "details": "images, received_type(MASK) mismatch input_type(IMAGE)", "extra_info": {"input_name": "images", "input_config": ["IMAGE", {"tooltip": "The images to save."}], "received_type": "MASK", "linked_node": ["1", 0]}}], "dependent_outputs": ["9"], "class_type": "SaveImage"}}}`},
		{"string where a number belongs is converted", `{` + emptyImage(`"width": "8", "height": 8.9, "batch_size": true, "color": 0`) + `, ` + okSave + `}`, ``},
		{"list widget value", `{"1": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": {"__value__": "area"}, "width": 8, "height": 8, "crop": "disabled"}}, "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}, ` + okSave + `}`, ``},
		{"unknown class only", `{"1": {"class_type": "Nope", "inputs": {}}}`,
			`{"error": {"type": "invalid_prompt", "message": "Cannot execute because node Nope does not exist.", "details": "Node ID '#1'", "extra_info": {}}, "node_errors": {}}`},
	}
	for _, tc := range tests {
		r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+tc.prompt+`}`)
		if tc.want == "" {
			if r.status != 200 {
				t.Errorf("%s: %d %s, want 200", tc.name, r.status, r.body)
			}
			continue
		}
		if r.status != 400 || string(r.body) != tc.want {
			t.Errorf("%s: %d\n got  %s\n want %s", tc.name, r.status, r.body, tc.want)
		}
	}
}

func TestInnerValidationException(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": {"2": {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}}, "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "v"}}}}`)
	body := r.json(t).(*obj)
	e := body.sub("node_errors").sub("2").at("errors").([]any)[0].(*obj)
	if r.status != 400 || e.at("type") != "exception_during_inner_validation" || e.at("details") != "'99'" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	extra := e.sub("extra_info")
	// ComfyUI files the error under the upstream node, with the consumer's input.
	if extra.at("input_name") != "images" || extra.at("exception_type") != "KeyError" || pyRepr(extra.at("linked_node")) != "['2', 0]" {
		t.Errorf("extra_info = %s", encodePy(extra))
	}
	if d := body.sub("error").at("details"); d != "" {
		t.Errorf("details = %q, want empty: the failing output has no errors of its own", d)
	}
}

func TestPartialOutputsStillQueue(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	r := postJSON(t, s.URL()+"/prompt", `{"client_id": "gw", "prompt": {`+emptyImage(`"width": 8, "height": 8, "batch_size": 1, "color": 0`)+`, `+okSave+`,
  "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}}, "7": {"class_type": "ImageInvert", "inputs": {}}}}`)
	body := r.json(t).(*obj)
	if r.status != 200 || !body.sub("node_errors").has("7") {
		t.Fatalf("%d %s, want 200 with node_errors for node 7", r.status, r.body)
	}
	id, _ := body.str("prompt_id")
	fs := ws.untilDone(t, id)
	if got := typesOf(fs, "status", "progress_state"); strings.Join(got, ",") != "execution_start,execution_cached,executing,executing,executed,execution_success,executing" {
		t.Errorf("frames %v: only the valid output runs", got)
	}
	q := get(t, s.URL()+"/history/"+id).json(t).(*obj).sub(id).at("prompt").([]any)
	if pyRepr(q[4]) != "['9']" {
		t.Errorf("outputs_to_execute = %s, want ['9']", pyRepr(q[4]))
	}
}

func TestMalformedBodies(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/prompt", `{"prompt": `, 500},
		{"/prompt", `[1, 2]`, 400},               // "prompt" not in the list: no_prompt
		{"/prompt", `["number"]`, 500},           // json_data["number"] on a list
		{"/prompt", `5`, 500},                    // `in` on an int
		{"/prompt", `{"prompt": [1]}`, 500},      // prompt[1] on a list
		{"/prompt", `{"prompt": []}`, 400},       // no outputs
		{"/prompt", `{"prompt": {"1": 5}}`, 500}, // 'class_type' in 5
		{"/prompt", `{"prompt": {}, "number": "x"}`, 500},
		{"/queue", ``, 500},
		{"/queue", `{"delete": 5}`, 500},
		{"/queue", `{"delete": "ab"}`, 200},
		{"/history", `[]`, 200},
		{"/interrupt", ``, 200},
		{"/interrupt", `[]`, 500},
		{"/free", `{}`, 200},
		{"/free", `nope`, 500},
	} {
		r := postJSON(t, s.URL()+tc.path, tc.body)
		if r.status != tc.status {
			t.Errorf("POST %s %s: %d %s, want %d", tc.path, tc.body, r.status, r.body, tc.status)
		}
		if r.status == 500 && string(r.body) != body500 {
			t.Errorf("POST %s %s: 500 body %q, want aiohttp's", tc.path, tc.body, r.body)
		}
	}
}

func TestPromptIDRules(t *testing.T) {
	t.Parallel()
	old := startSim(t, Options{})
	for body, want := range map[string]string{
		`"prompt_id": "not-a-uuid"`: "not-a-uuid",
		`"prompt_id": null`:         "None",
		`"prompt_id": 42`:           "42",
	} {
		r := postJSON(t, old.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "id")+`, `+body+`}`)
		if id, _ := r.json(t).(*obj).str("prompt_id"); r.status != 200 || id != want {
			t.Errorf("v0.3.65, %s: %d %s, want prompt_id %q", body, r.status, r.body, want)
		}
	}
	head := startSim(t, Options{RequireUUIDPromptID: true})
	const invalid = `{"error": {"type": "invalid_prompt_id", "message": "prompt_id must be a valid UUID", "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one", "extra_info": {}}, "node_errors": {}}`
	for _, bad := range []string{`"not-a-uuid"`, `"3F2504E0-4F89-41D3-9A0C-0305E82C3301"`, `"{3f2504e0-4f89-41d3-9a0c-0305e82c3301}"`, `42`} {
		r := postJSON(t, head.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "id")+`, "prompt_id": `+bad+`}`)
		if r.status != 400 || string(r.body) != invalid {
			t.Errorf("v0.25+, %s: %d %s", bad, r.status, r.body)
		}
	}
	for _, good := range []string{`"3f2504e0-4f89-41d3-9a0c-0305e82c3301"`, `null`} {
		r := postJSON(t, head.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "id")+`, "prompt_id": `+good+`}`)
		if id, _ := r.json(t).(*obj).str("prompt_id"); r.status != 200 || !canonicalUUID(id) {
			t.Errorf("v0.25+, %s: %d %s", good, r.status, r.body)
		}
	}
	// The counter moved for every request, rejected or not: 4 bad + 2 good.
	r := postJSON(t, head.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "id")+`}`)
	if n := r.json(t).(*obj).at("number"); n != int64(6) {
		t.Errorf("number = %v, want 6", n)
	}
}

func TestDependencyCycleAtRunTime(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	// A cycle reached only through an undeclared input passes validation and
	// is caught when the graph is staged (DependencyCycleError).
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, `{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0, "x": ["2", 0]}},
  "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
  "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}}}`, "gw")
	e := find(ws.untilDone(t, id), "execution_error")
	if e.field("exception_type") != "graph.DependencyCycleError" || e.field("exception_message") != "Dependency cycle detected" {
		t.Errorf("execution_error = %s", e.data)
	}
}
