package comfy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/google/uuid"
)

// startSim runs the ComfyUI simulator for one test and returns a client for it.
func startSim(t *testing.T) (*comfysim.Sim, *comfy.Client) {
	t.Helper()
	sim := comfysim.New(comfysim.Options{})
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return sim, comfy.New(sim.URL(), "gw-sim-"+uuid.NewString(), &http.Client{Transport: tr})
}

// tinyPNG encodes a 4x3 image.
func tinyPNG(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 4, 3))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// basicPrompt is the s02 workflow: EmptyImage -> ImageBlur -> ImageInvert -> SaveImage.
func basicPrompt(prefix string) json.RawMessage {
	return json.RawMessage(`{
		"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 15510161}},
		"2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
		"3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
		"4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "` + prefix + `"}}}`)
}

func TestSimulatorEndToEnd(t *testing.T) {
	t.Parallel()
	_, c := startSim(t)
	ctx := t.Context()

	conn, err := c.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	if ev, err := conn.Next(ctx); err != nil || ev.Type != comfy.EventStatus || ev.SID != c.ClientID() {
		t.Fatalf("first event: %+v, %v; want status with our sid", ev, err)
	}

	pid := uuid.NewString()
	res, err := c.Submit(ctx, comfy.SubmitParams{Prompt: basicPrompt("gwsim/basic"), PromptID: pid})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if res.PromptID != pid {
		t.Fatalf("Submit returned prompt id %q, want %q", res.PromptID, pid)
	}

	pct, outputs := waitDone(t, ctx, conn, pid, basicPrompt("gwsim/basic"))
	if pct != 99 {
		t.Errorf("progress at the end = %d, want 99", pct)
	}
	files := outputs["4"].Files()
	if len(files) != 1 || files[0].Type != "output" || files[0].Subfolder != "gwsim" {
		t.Fatalf("executed files = %+v", files)
	}

	h, err := c.History(ctx, pid)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if !h.Succeeded() || h.Interrupted() {
		t.Errorf("history status = %+v", h.Status)
	}
	if hf := h.Outputs["4"].Files(); len(hf) != 1 || hf[0] != files[0] {
		t.Errorf("history files %+v, want %+v", hf, files)
	}
	checkPNG(t, c, files[0])
}

// waitDone reads events until pid's final executing{node: null} and returns
// the progress and the outputs of executed events.
func waitDone(t *testing.T, ctx context.Context, conn *comfy.Conn, pid string, prompt json.RawMessage) (int, map[string]comfy.NodeOutput) {
	t.Helper()
	p := comfy.NewProgress(prompt)
	outputs := map[string]comfy.NodeOutput{}
	for {
		ev, err := conn.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if ev.PromptID != "" && ev.PromptID != pid {
			continue
		}
		p.Apply(ev)
		switch {
		case ev.Type == comfy.EventExecuted:
			outputs[ev.Node] = ev.Output
		case ev.Type == comfy.EventExecutionError:
			t.Fatalf("execution_error: %s", ev.Data)
		case ev.Type == comfy.EventExecuting && ev.NodeNull:
			return p.Percent(), outputs
		}
	}
}

func checkPNG(t *testing.T, c *comfy.Client, ref comfy.FileRef) {
	t.Helper()
	resp, err := c.View(t.Context(), ref)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("View body: %d bytes, err %v; want a PNG", len(b), err)
	}
}

func TestSimulatorErrors(t *testing.T) {
	t.Parallel()
	_, c := startSim(t)
	ctx := t.Context()

	_, err := c.Submit(ctx, comfy.SubmitParams{Prompt: json.RawMessage(`{"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}`)})
	var perr *comfy.PromptError
	if !errors.As(err, &perr) || perr.Type != "prompt_outputs_failed_validation" {
		t.Fatalf("Submit invalid prompt: got %v, want a PromptError", err)
	}

	if _, err := c.History(ctx, uuid.NewString()); !errors.Is(err, comfy.ErrNotInHistory) {
		t.Errorf("History of an unknown id: got %v, want ErrNotInHistory", err)
	}
	if _, err := c.View(ctx, comfy.FileRef{Filename: "does_not_exist.png", Type: "output"}); !errors.Is(err, comfy.ErrNotFound) {
		t.Errorf("View of a missing file: got %v, want ErrNotFound", err)
	}
	if q, err := c.Queue(ctx); err != nil || len(q.Running)+len(q.Pending) != 0 {
		t.Errorf("Queue: %+v, %v; want empty", q, err)
	}
	if n, err := c.QueueRemaining(ctx); err != nil || n != 0 {
		t.Errorf("QueueRemaining: %d, %v; want 0", n, err)
	}
	if s, err := c.SystemStats(ctx); err != nil || s.System.ComfyUIVersion == "" || len(s.Devices) == 0 {
		t.Errorf("SystemStats: %+v, %v", s, err)
	}
}

func TestSimulatorUploadThenLoadImage(t *testing.T) {
	t.Parallel()
	_, c := startSim(t)
	ctx := t.Context()
	conn, err := c.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()

	up, err := c.Upload(ctx, comfy.UploadParams{Filename: "in.png", Body: bytes.NewReader(tinyPNG(t)), Subfolder: "gw/job42"})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if up.Annotated() != "gw/job42/in.png" {
		t.Errorf("Annotated() = %q", up.Annotated())
	}
	prompt := json.RawMessage(`{
		"1": {"class_type": "LoadImage", "inputs": {"image": "` + up.Annotated() + `"}},
		"2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
		"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw/job42/out"}}}`)
	pid := uuid.NewString()
	if _, err := c.Submit(ctx, comfy.SubmitParams{Prompt: prompt, PromptID: pid}); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	_, outputs := waitDone(t, ctx, conn, pid, prompt)
	files := outputs["3"].Files()
	if len(files) != 1 {
		t.Fatalf("files = %+v", files)
	}
	checkPNG(t, c, files[0])
}

func TestSimulatorStreamSurvivesRestart(t *testing.T) {
	t.Parallel()
	sim, c := startSim(t)
	events := make(chan comfy.Event, 1024)
	connects := make(chan struct{}, 8)
	s := comfy.NewStream(c, comfy.StreamOptions{
		OnEvent:    func(ev comfy.Event) { events <- ev },
		OnConnect:  func(context.Context) { connects <- struct{}{} },
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	waitFor(t, connects, "first connect")
	if err := sim.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := sim.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, connects, "reconnect after restart")

	pid := uuid.NewString()
	if _, err := c.Submit(ctx, comfy.SubmitParams{Prompt: basicPrompt("gwsim/restart"), PromptID: pid}); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	for {
		ev := waitFor(t, events, "events of the prompt")
		if ev.Type == comfy.EventExecuting && ev.NodeNull && ev.PromptID == pid {
			break
		}
	}
}

// waitFor receives from ch, failing the test after 10 s.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestSimulatorObjectInfo(t *testing.T) {
	t.Parallel()
	_, c := startSim(t)
	b, err := c.ObjectInfo(t.Context())
	if err != nil {
		t.Fatalf("ObjectInfo: %v", err)
	}
	var info map[string]json.RawMessage
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("decode object_info: %v", err)
	}
	if _, ok := info["KSampler"]; !ok || len(info) < 300 {
		t.Errorf("object_info has %d classes (KSampler: %v), want the recorded catalog", len(info), ok)
	}
}
