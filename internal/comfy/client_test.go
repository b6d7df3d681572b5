package comfy

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSubmitSendsParamsAndReadsResult(t *testing.T) {
	t.Parallel()
	r := rec(t, "s02/submit_with_client_prompt_id")
	var got map[string]json.RawMessage
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/prompt" {
			t.Errorf("got %s %s, want POST /prompt", req.Method, req.URL.Path)
		}
		if err := json.NewDecoder(req.Body).Decode(&got); err != nil {
			t.Errorf("decode request: %v", err)
		}
		r.write(w)
	})
	var sent struct {
		Prompt    json.RawMessage `json:"prompt"`
		PromptID  string          `json:"prompt_id"`
		ExtraData map[string]any  `json:"extra_data"`
	}
	if err := json.Unmarshal(r.RequestJSON, &sent); err != nil {
		t.Fatal(err)
	}

	res, err := c.Submit(t.Context(), SubmitParams{Prompt: sent.Prompt, PromptID: sent.PromptID, ExtraData: sent.ExtraData})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}

	want := &SubmitResult{PromptID: "a8bed3c8-c097-4930-909a-c49c3804f827", Number: 2, NodeErrors: json.RawMessage(`{}`)}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if !jsonEqual(t, got["client_id"], []byte(`"gw-test"`)) {
		t.Errorf("client_id = %s, want \"gw-test\"", got["client_id"])
	}
	if !jsonEqual(t, got["prompt"], sent.Prompt) {
		t.Errorf("prompt = %s, want %s", got["prompt"], sent.Prompt)
	}
	if !jsonEqual(t, got["extra_data"], []byte(`{"extra_pnginfo":{"note":"gateway-probe"}}`)) {
		t.Errorf("extra_data = %s", got["extra_data"])
	}
	if _, ok := got["front"]; ok {
		t.Errorf("front sent although false")
	}
}

func TestSubmitOmitsEmptyOptionalFields(t *testing.T) {
	t.Parallel()
	var got map[string]json.RawMessage
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		_ = json.NewDecoder(req.Body).Decode(&got)
		rec(t, "s02/submit").write(w)
	})
	res, err := c.Submit(t.Context(), SubmitParams{Prompt: json.RawMessage(`{"1":{}}`), Front: true})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if res.Number != 0 || res.PromptID != "3cc2a991-1a19-499b-9ebd-92558744ea51" {
		t.Errorf("got %+v", res)
	}
	for _, k := range []string{"prompt_id", "extra_data"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s sent although empty", k)
		}
	}
	if string(got["front"]) != "true" {
		t.Errorf("front = %s, want true", got["front"])
	}
}

func TestSubmitRejectsEmptyOrInvalidPromptLocally(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		t.Errorf("unexpected request %s", req.URL)
	})
	for _, p := range []string{"", "  ", "{not json"} {
		if _, err := c.Submit(t.Context(), SubmitParams{Prompt: json.RawMessage(p)}); err == nil {
			t.Errorf("Submit(%q): got nil error", p)
		}
	}
}

func TestSubmitValidationErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key       string
		wantType  string
		wantNode  string // a node id expected in node_errors, "" for none
		wantError string // that node's first error type
	}{
		{"s04/unknown_class_type", "invalid_prompt", "", ""},
		{"s04/unknown_class_type_only", "invalid_prompt", "", ""},
		{"s04/missing_required_input", "prompt_outputs_failed_validation", "2", "required_input_missing"},
		{"s04/missing_widget_input", "prompt_outputs_failed_validation", "1", "required_input_missing"},
		{"s04/value_out_of_range", "prompt_outputs_failed_validation", "1", "value_smaller_than_min"},
		{"s04/bad_combo_value", "prompt_outputs_failed_validation", "2", "value_not_in_list"},
		{"s04/wrong_type_value", "prompt_outputs_failed_validation", "1", "invalid_input_type"},
		{"s04/link_to_missing_node", "prompt_outputs_failed_validation", "3", "exception_during_validation"},
		{"s04/no_output_node", "prompt_no_outputs", "", ""},
		{"s04/missing_class_type_key", "invalid_prompt", "", ""},
		{"s04/empty_prompt", "prompt_no_outputs", "", ""},
		{"s04/no_prompt_key", "no_prompt", "", ""},
		{"s03/submit_loadimage_missing_file", "prompt_outputs_failed_validation", "1", "custom_validation_failed"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			r := rec(t, tt.key)
			c := serve(t, func(w http.ResponseWriter, _ *http.Request) { r.write(w) })

			_, err := c.Submit(t.Context(), SubmitParams{Prompt: json.RawMessage(`{}`)})

			var perr *PromptError
			if !errors.As(err, &perr) {
				t.Fatalf("got error %v (%T), want *PromptError", err, err)
			}
			var body struct {
				Error struct {
					Message, Details string
				}
				NodeErrors json.RawMessage `json:"node_errors"`
			}
			if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
				t.Fatal(err)
			}
			if perr.Type != tt.wantType || perr.Message != body.Error.Message || perr.Details != body.Error.Details {
				t.Errorf("got %q/%q/%q, want %q/%q/%q", perr.Type, perr.Message, perr.Details, tt.wantType, body.Error.Message, body.Error.Details)
			}
			if !jsonEqual(t, perr.NodeErrors, body.NodeErrors) {
				t.Errorf("NodeErrors = %s, want %s", perr.NodeErrors, body.NodeErrors)
			}
			checkNodeErrors(t, perr, tt.wantNode, tt.wantError)
		})
	}
}

func checkNodeErrors(t *testing.T, perr *PromptError, node, errType string) {
	t.Helper()
	nodes, err := perr.Nodes()
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	if node == "" {
		if len(nodes) != 0 {
			t.Errorf("got node errors %v, want none", nodes)
		}
		return
	}
	ne, ok := nodes[node]
	if !ok || len(ne.Errors) == 0 {
		t.Fatalf("node_errors lacks node %s: %v", node, nodes)
	}
	if ne.Errors[0].Type != errType || ne.ClassType == "" || len(ne.DependentOutputs) == 0 {
		t.Errorf("node %s: got %+v, want first error %s", node, ne, errType)
	}
}

func TestSubmitServerErrorIsHTTPError(t *testing.T) {
	t.Parallel()
	r := rec(t, "s04/body_not_json")
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { r.write(w) })

	_, err := c.Submit(t.Context(), SubmitParams{Prompt: json.RawMessage(`{}`)})

	var herr *HTTPError
	if !errors.As(err, &herr) {
		t.Fatalf("got %v (%T), want *HTTPError", err, err)
	}
	if herr.Status != 500 || herr.Body != "500 Internal Server Error\n\nServer got itself in trouble" {
		t.Errorf("got %+v", herr)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("a 500 matches ErrNotFound")
	}
}

func TestSubmit400WithoutEnvelopeIsHTTPError(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "bad", http.StatusBadRequest) })
	_, err := c.Submit(t.Context(), SubmitParams{Prompt: json.RawMessage(`{}`)})
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.Status != 400 {
		t.Fatalf("got %v, want *HTTPError 400", err)
	}
}

func TestNetworkErrorIsWrapped(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	c := New(srv.URL, "gw-test", srv.Client())
	srv.Close()

	_, err := c.Submit(t.Context(), SubmitParams{Prompt: json.RawMessage(`{}`)})

	var herr *HTTPError
	if err == nil || errors.As(err, &herr) || !strings.HasPrefix(err.Error(), "comfy: submit: ") {
		t.Errorf("got %v, want a wrapped network error", err)
	}
}

func TestQueueRecorded(t *testing.T) {
	t.Parallel()
	c := serveRecorded(t, rec(t, "s05/queue_after_submit"))

	q, err := c.Queue(t.Context())
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}

	want := &Queue{
		Running: []QueueItem{{Number: 23, PromptID: "3c7fadcb-9697-43c9-94ad-c53faa7e914f", ClientID: "probe-s05-ba0c8801"}},
		Pending: []QueueItem{
			{Number: 24, PromptID: "8faca33d-26a5-4e3d-bd40-73ca1bb9924c", ClientID: "probe-s05-ba0c8801"},
			{Number: 25, PromptID: "d2a5f6fd-31c5-403c-9801-065506fafd99", ClientID: "probe-s05-ba0c8801"},
		},
	}
	if diff := cmp.Diff(want, q); diff != "" {
		t.Errorf("queue (-want +got):\n%s", diff)
	}
	if !q.Has("d2a5f6fd-31c5-403c-9801-065506fafd99") || !q.Has("3c7fadcb-9697-43c9-94ad-c53faa7e914f") || q.Has("nope") {
		t.Errorf("Has gives wrong answers")
	}
}

func TestQueueSortsPendingAndToleratesShapes(t *testing.T) {
	t.Parallel()
	// Heap order, a front item (negative number), a tie broken by prompt_id,
	// a 6-element item (pre-v0.3.68) and a bare 2-element one.
	body := `{"queue_running": [], "queue_pending": [
		[7, "b", {}, {"client_id": "gw"}, ["3"]],
		[2.5, "z", {}, {}, ["3"], {"sensitive": 1}],
		[-4, "f", {}, {"client_id": "gw"}, ["3"]],
		[7, "a", {}, null, ["3"]],
		[9, "y"]
	]}`
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })

	q, err := c.Queue(t.Context())
	if err != nil {
		t.Fatalf("Queue: %v", err)
	}

	want := []QueueItem{
		{Number: -4, PromptID: "f", ClientID: "gw"},
		{Number: 2.5, PromptID: "z"},
		{Number: 7, PromptID: "a"},
		{Number: 7, PromptID: "b", ClientID: "gw"},
		{Number: 9, PromptID: "y"},
	}
	if diff := cmp.Diff(want, q.Pending); diff != "" {
		t.Errorf("pending (-want +got):\n%s", diff)
	}
	if len(q.Running) != 0 {
		t.Errorf("running = %v, want empty", q.Running)
	}
}

func TestQueueMalformedItemFails(t *testing.T) {
	t.Parallel()
	for _, item := range []string{`[1]`, `["x", "id"]`, `[1, 2]`, `{}`} {
		c := serve(t, func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"queue_running": [], "queue_pending": [`+item+`]}`)
		})
		if _, err := c.Queue(t.Context()); err == nil {
			t.Errorf("item %s: got nil error; a skipped item could make a queued prompt look lost", item)
		}
	}
}

func TestQueueRemaining(t *testing.T) {
	t.Parallel()
	c := serveRecorded(t, rec(t, "s01/GET /prompt"))
	n, err := c.QueueRemaining(t.Context())
	if err != nil || n != 0 {
		t.Fatalf("got %d, %v; want 0, nil", n, err)
	}
	c = serve(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"exec_info": {"queue_remaining": 3}}`)
	})
	if n, err := c.QueueRemaining(t.Context()); err != nil || n != 3 {
		t.Fatalf("got %d, %v; want 3, nil", n, err)
	}
}

func TestInterruptAndDeleteQueuedBodies(t *testing.T) {
	t.Parallel()
	type call struct{ path, body string }
	calls := make(chan call, 4)
	c := serve(t, func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		calls <- call{req.Method + " " + req.URL.Path, string(b)}
		rec(t, "s05/interrupt_when_idle").write(w) // 200, empty body
	})

	if err := c.Interrupt(t.Context(), "8faca33d-26a5-4e3d-bd40-73ca1bb9924c"); err != nil {
		t.Fatalf("Interrupt: %v", err)
	}
	if err := c.Interrupt(t.Context(), ""); err != nil {
		t.Fatalf("Interrupt global: %v", err)
	}
	if err := c.DeleteQueued(t.Context(), "d2a5f6fd-31c5-403c-9801-065506fafd99", "x"); err != nil {
		t.Fatalf("DeleteQueued: %v", err)
	}
	if err := c.DeleteQueued(t.Context()); err != nil {
		t.Fatalf("DeleteQueued(): %v", err)
	}

	want := []call{
		{"POST /interrupt", `{"prompt_id":"8faca33d-26a5-4e3d-bd40-73ca1bb9924c"}`},
		{"POST /interrupt", `{}`},
		{"POST /queue", `{"delete":["d2a5f6fd-31c5-403c-9801-065506fafd99","x"]}`},
	}
	for _, w := range want {
		if got := recv(t, calls, "request"); got != w {
			t.Errorf("got %+v, want %+v", got, w)
		}
	}
	if len(calls) != 0 {
		t.Errorf("DeleteQueued with no ids sent a request")
	}
}

func TestSystemStats(t *testing.T) {
	t.Parallel()
	c := serveRecorded(t, rec(t, "s01/GET /system_stats"))
	s, err := c.SystemStats(t.Context())
	if err != nil {
		t.Fatalf("SystemStats: %v", err)
	}
	want := &SystemStats{
		System: System{
			OS: "posix", ComfyUIVersion: "0.3.65", PythonVersion: "3.11.2 (main, Apr 28 2025, 14:11:48) [GCC 12.2.0]",
			PyTorchVersion: "1.13.0a0", RAMTotal: 25276502016, RAMFree: 24667160576,
		},
		Devices: []Device{{
			Name: "cpu", Type: "cpu", VRAMTotal: 25276502016, VRAMFree: 24667160576,
			TorchVRAMTotal: 25276502016, TorchVRAMFree: 24667160576,
		}},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

func TestSystemStatsHeadShape(t *testing.T) {
	t.Parallel()
	// Current upstream (docs/comfyui-protocol.md): several devices, extra keys, a float where an int is expected.
	body := `{"system": {"os": "linux", "ram_total": 135006371840, "ram_free": 1.2e11, "comfyui_version": "0.27.0",
		"comfy_package_versions": [], "deploy_environment": "local-git"},
		"devices": [{"name": "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", "type": "cuda", "index": 0,
			"vram_total": 85024112640, "vram_free": 84000000000, "torch_vram_total": 0, "torch_vram_free": 0},
			{"name": "cuda:1", "type": "cuda", "index": 1, "vram_total": 1, "vram_free": null}]}`
	c := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
	s, err := c.SystemStats(t.Context())
	if err != nil {
		t.Fatalf("SystemStats: %v", err)
	}
	if s.System.OS != "linux" || s.System.RAMFree != 120000000000 || len(s.Devices) != 2 {
		t.Fatalf("got %+v", s)
	}
	d := s.Devices[0]
	if d.Index == nil || *d.Index != 0 || d.VRAMTotal != 85024112640 || d.VRAMFree != 84000000000 {
		t.Errorf("device 0 = %+v", d)
	}
	if d := s.Devices[1]; d.Index == nil || *d.Index != 1 || d.VRAMFree != 0 {
		t.Errorf("device 1 = %+v", d)
	}
}

func TestBaseURLPathPrefixAndTrailingSlash(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/api/prompt" {
			http.NotFound(w, req)
			return
		}
		_, _ = io.WriteString(w, `{"exec_info": {"queue_remaining": 1}}`)
	}))
	t.Cleanup(srv.Close)
	c := New(srv.URL+"/api/", "", nil)
	if n, err := c.QueueRemaining(t.Context()); err != nil || n != 1 {
		t.Fatalf("got %d, %v; want 1, nil", n, err)
	}
	if c.ClientID() == "" {
		t.Errorf("empty client id not replaced")
	}
	c.hc.CloseIdleConnections()
}
