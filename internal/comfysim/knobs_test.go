package comfysim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Every knob, observed the way a gateway would: over real HTTP and WebSocket.

// t2iPrompt is ComfyUI's default text-to-image workflow in API format.
func t2iPrompt(ckpt string, seed, steps int) string {
	return fmt.Sprintf(`{
 "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": %q}},
 "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
 "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
 "3": {"class_type": "KSampler", "inputs": {"seed": %d, "steps": %d, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
 "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
 "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
}`, ckpt, seed, steps)
}

// chainPrompt is EmptyImage -> ImageInvert -> ImageInvert -> SaveImage.
func chainPrompt(prefix string) string {
	return `{"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 255}},` +
		` "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},` +
		` "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},` +
		` "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "` + prefix + `"}}}`
}

func count(fs []wsFrameT, typ string) int {
	n := 0
	for _, f := range fs {
		if f.typ == typ {
			n++
		}
	}
	return n
}

func find(fs []wsFrameT, typ string) wsFrameT {
	for _, f := range fs {
		if f.typ == typ {
			return f
		}
	}
	return wsFrameT{}
}

func TestTextToImageWorkflow(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, t2iPrompt("dreamshaper_8.safetensors", 42, 12), "gw")
	fs := ws.untilDone(t, id)
	if got := count(fs, "progress"); got != 12 {
		t.Errorf("progress frames = %d, want 12 (the steps input)", got)
	}
	last := fs[len(fs)-1]
	for _, f := range fs {
		if f.typ == "progress" && (f.field("node") != "3" || f.field("max") != int64(12)) {
			t.Errorf("progress frame %s, want node 3 of max 12", f.data)
		}
	}
	if find(fs, "execution_success").msg == nil {
		t.Fatalf("no execution_success: %v", frameTypes(fs))
	}
	out := find(fs, "executed").field("output").(*obj).at("images").([]any)[0].(*obj)
	v := get(t, s.URL()+"/view?filename="+out.at("filename").(string)+"&type=output")
	checkImage(t, "output", v.body, traceImage{IsPNG: true, Width: 512, Height: 512})
	if last.typ != "executing" || s.ModelLoads() != 1 {
		t.Errorf("last frame %s, model loads %d; want executing null and 1 load", last.data, s.ModelLoads())
	}
	h := get(t, s.URL()+"/history/"+id).json(t).(*obj).sub(id)
	cfg := h.at("prompt").([]any)[2].(*obj).sub("3").sub("inputs").at("cfg")
	if cfg != 8.0 {
		t.Errorf("history cfg = %#v, want 8.0: validation writes FLOAT coercions back", cfg)
	}
}

func TestStepsAndStepDelay(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{Steps: 3, StepDelay: 20 * time.Millisecond})
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, t2iPrompt("v1-5-pruned-emaonly.safetensors", 1, 40), "gw")
	fs := ws.untilDone(t, id)
	if got := count(fs, "progress"); got != 3 {
		t.Errorf("progress frames = %d, want 3 (Options.Steps overrides the input)", got)
	}
	run := s.Log().Runs(id)[0]
	if d := run.End.Sub(run.Start); d < 60*time.Millisecond {
		t.Errorf("run took %v, want at least 3 x 20ms of steps", d)
	}
}

func TestNodeDelayPerClass(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{NodeDelay: time.Millisecond})
	s.SetNodeDelay("ImageInvert", 40*time.Millisecond)
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, chainPrompt("delay"), "gw")
	ws.untilDone(t, id)
	run := s.Log().Runs(id)[0]
	if d := run.End.Sub(run.Start); d < 80*time.Millisecond {
		t.Errorf("run took %v, want at least two ImageInvert delays of 40ms", d)
	}
	if run.Outcome != OutcomeSuccess || run.Instance != s.Addr() {
		t.Errorf("run = %+v, want success on %s", run, s.Addr())
	}
}

func TestFailNode(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.FailNodeOnce("3", "CUDA out of memory")
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, chainPrompt("fail"), "gw")
	fs := ws.untilDone(t, id)
	want := []string{"status", "status", "status", "execution_start", "execution_cached", "progress_state", "executing",
		"progress_state", "progress_state", "executing", "progress_state", "progress_state", "executing", "execution_error", "status", "executing"}
	if got := typesOf(fs); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("frames %v, want %v", got, want)
	}
	e := find(fs, "execution_error")
	if e.field("node_id") != "3" || e.field("node_type") != "ImageInvert" || e.field("exception_message") != "CUDA out of memory\n" || e.field("exception_type") != "RuntimeError" {
		t.Errorf("execution_error = %s", e.data)
	}
	if got := e.field("executed").([]any); len(got) != 2 {
		t.Errorf("executed = %v, want the two nodes before", got)
	}
	st := get(t, s.URL()+"/history/"+id).json(t).(*obj).sub(id).sub("status")
	if st.at("status_str") != "error" || st.at("completed") != false {
		t.Errorf("history status = %s", encodePy(st))
	}
	if r := s.Log().Runs(id); len(r) != 1 || r[0].Outcome != OutcomeError {
		t.Errorf("log = %+v, want one error run", r)
	}
	// Once only: the same prompt runs again, the failed node was not cached.
	id2 := submit(t, s, chainPrompt("fail"), "gw")
	fs = ws.untilDone(t, id2)
	if find(fs, "execution_success").msg == nil {
		t.Errorf("second run: %v, want success", frameTypes(fs))
	}
	if got := find(fs, "execution_cached").field("nodes"); pyRepr(got) != "['1', '2']" {
		t.Errorf("execution_cached nodes = %s, want ['1', '2']", pyRepr(got))
	}
}

func TestFailNodeByClassEveryTime(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.FailNode("SaveImage", "disk full")
	ws := dialWS(t, s, "?clientId=gw")
	for i := 0; i < 2; i++ {
		id := submit(t, s, chainPrompt("x"), "gw")
		if e := find(ws.untilDone(t, id), "execution_error"); e.field("node_id") != "4" {
			t.Fatalf("run %d: execution_error %s, want node 4", i, e.data)
		}
	}
	s.ClearFaults()
	id := submit(t, s, chainPrompt("x"), "gw")
	if find(ws.untilDone(t, id), "execution_success").msg == nil {
		t.Errorf("after ClearFaults the prompt still fails")
	}
}

func TestFailHTTPBefore(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.FailHTTP("POST /prompt", 2)
	body := `{"prompt": ` + trivialPrompt(1, "h") + `, "prompt_id": "p-1"}`
	for i := 0; i < 2; i++ {
		r := postJSON(t, s.URL()+"/api/prompt", body)
		if r.status != 500 || string(r.body) != body500 || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("attempt %d: %d %q, want aiohttp's 500", i, r.status, r.body)
		}
	}
	if q := get(t, s.URL()+"/queue"); q.status != 200 {
		t.Errorf("GET /queue = %d: the fault is for POST /prompt only", q.status)
	}
	if r := postJSON(t, s.URL()+"/prompt", body); r.status != 200 {
		t.Fatalf("third attempt: %d %s", r.status, r.body)
	}
	if err := s.Log().WaitFinished(ctxFor(t), "p-1", 1); err != nil {
		t.Fatal(err)
	}
	if n := s.Log().Count("p-1"); n != 1 {
		t.Errorf("p-1 ran %d times, want 1: failed requests are not handled", n)
	}
}

func TestFailHTTPAfterHandling(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.InjectHTTPFault(HTTPFault{Route: "/prompt", After: true})
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(2, "a")+`, "prompt_id": "lost-answer"}`)
	if r.status != 500 {
		t.Fatalf("status %d, want 500", r.status)
	}
	if err := s.Log().WaitFinished(ctxFor(t), "lost-answer", 1); err != nil {
		t.Fatalf("the prompt behind the failed answer never ran: %v", err)
	}
}

func TestDropHTTPConnection(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.InjectHTTPFault(HTTPFault{Route: "/history/", Drop: true})
	_, err := http.Get(s.URL() + "/history/x")
	if err == nil {
		t.Fatal("GET succeeded, want the connection cut")
	}
	if r := get(t, s.URL()+"/history/x"); r.status != 200 || string(r.body) != "{}" {
		t.Errorf("next request: %d %s, want 200 {}", r.status, r.body)
	}
}

func TestDropWebSocketMidRunAndReconnect(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.SetNodeDelay("ImageInvert", 250*time.Millisecond)
	s.DropWebSocketOn("executing", 2)
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, chainPrompt("drop"), "gw")
	fs := ws.waitClosed(t)
	if got := count(fs, "executing"); got != 1 {
		t.Errorf("executing frames before the cut = %d, want 1 (the second is lost)", got)
	}
	// Reconnecting mid-node, the client is told which node runs (no prompt_id).
	ws2 := dialWS(t, s, "?clientId=gw")
	first, _ := ws2.next(t)
	second, _ := ws2.next(t)
	if first.typ != "status" || first.field("sid") != "gw" {
		t.Errorf("first frame %s, want status with sid", first.data)
	}
	if second.typ != "executing" || second.msg.sub("data").has("prompt_id") {
		t.Errorf("second frame %s, want the reconnect executing without prompt_id", second.data)
	}
	ws2.untilDone(t, id)
}

func TestHangRelease(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.Hang("")
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, chainPrompt("hang"), "gw")
	got, err := s.WaitHanging(ctxFor(t))
	if err != nil || got != id {
		t.Fatalf("WaitHanging = %q, %v; want %q", got, err, id)
	}
	q := get(t, s.URL()+"/queue").json(t).(*obj)
	if running := q.at("queue_running").([]any); len(running) != 1 {
		t.Errorf("queue_running = %s, want the hanging prompt", encodePy(running))
	}
	if r := s.Log().Runs(id); len(r) != 1 || r[0].Outcome != OutcomeRunning {
		t.Errorf("log = %+v, want one running run", r)
	}
	s.Release()
	if find(ws.untilDone(t, id), "execution_success").msg == nil {
		t.Error("released prompt did not succeed")
	}
}

func TestHangInterrupted(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	s.Hang("fixed-id")
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+chainPrompt("hang")+`, "client_id": "gw", "prompt_id": "fixed-id"}`)
	if r.status != 200 {
		t.Fatal(r.status)
	}
	if _, err := s.WaitHanging(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	postJSON(t, s.URL()+"/interrupt", `{"prompt_id": "fixed-id"}`)
	fs := ws.untilDone(t, "fixed-id")
	e := find(fs, "execution_interrupted")
	if e.field("node_id") != "1" {
		t.Errorf("execution_interrupted = %s, want node 1 (hangs park in the first node)", e.data)
	}
	if r := s.Log().Runs("fixed-id"); r[0].Outcome != OutcomeInterrupted {
		t.Errorf("outcome %s, want interrupted", r[0].Outcome)
	}
	in := s.Interrupts()
	if len(in) != 1 || in[0].PromptID != "fixed-id" || in[0].Running != "fixed-id" || !in[0].Applied {
		t.Errorf("Interrupts() = %+v", in)
	}
}

func TestStopAndRestart(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	done := submit(t, s, trivialPrompt(7, "kept"), "gw")
	ws.untilDone(t, done)
	s.Hang("")
	id := submit(t, s, chainPrompt("lost"), "gw")
	if _, err := s.WaitHanging(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	ws.waitClosed(t)
	if _, err := http.Get("http://" + addr + "/queue"); err == nil {
		t.Fatal("the stopped instance still answers")
	}
	if r := s.Log().Runs(id); len(r) != 1 || r[0].Outcome != OutcomeAborted || r[0].End.IsZero() {
		t.Errorf("log = %+v, want one aborted run", r)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Errorf("restarted on %s, want %s", s.Addr(), addr)
	}
	if h := get(t, s.URL()+"/history"); string(h.body) != "{}" {
		t.Errorf("history after restart = %s, want {} (lost like a real restart)", h.body)
	}
	if v := get(t, s.URL()+"/view?filename=kept_00001_.png"); v.status != 200 {
		t.Errorf("output file after restart: %d, want 200 (the disk survives)", v.status)
	}
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(8, "again")+`}`)
	if n := r.json(t).(*obj).at("number"); n != int64(0) {
		t.Errorf("number after restart = %v, want 0 (a new process)", n)
	}
}

func TestKeepStateOnRestart(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{KeepStateOnRestart: true})
	ws := dialWS(t, s, "?clientId=gw")
	first := submit(t, s, trivialPrompt(1, "k"), "gw")
	ws.untilDone(t, first)
	s.Hang("")
	running := submit(t, s, chainPrompt("r"), "gw")
	if _, err := s.WaitHanging(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	pending := submit(t, s, trivialPrompt(2, "p"), "gw")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.Log().WaitFinished(ctxFor(t), pending, 1); err != nil {
		t.Fatalf("pending prompt did not run after restart: %v", err)
	}
	h := get(t, s.URL()+"/history").json(t).(*obj)
	if !h.has(first) || !h.has(pending) || h.has(running) {
		t.Errorf("history keys %v, want the first (%s) and the pending (%s) prompt, not %s killed mid-run", h.keys, first, pending, running)
	}
}

func TestModelLoads(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{ModelLoadDelay: 30 * time.Millisecond})
	ws := dialWS(t, s, "?clientId=gw")
	run := func(ckpt string, seed int) time.Duration {
		id := submit(t, s, t2iPrompt(ckpt, seed, 1), "gw")
		ws.untilDone(t, id)
		r := s.Log().Runs(id)[0]
		return r.End.Sub(r.Start)
	}
	if d := run("sd_xl_base_1.0.safetensors", 1); d < 30*time.Millisecond || s.ModelLoads() != 1 {
		t.Errorf("first run %v, %d loads; want the load delay and 1 load", d, s.ModelLoads())
	}
	run("sd_xl_base_1.0.safetensors", 2)
	if s.ModelLoads() != 1 {
		t.Errorf("same checkpoint: %d loads, want still 1", s.ModelLoads())
	}
	run("dreamshaper_8.safetensors", 3)
	run("sd_xl_base_1.0.safetensors", 4)
	if s.ModelLoads() != 3 || s.LoadedModel() != "sd_xl_base_1.0.safetensors" {
		t.Errorf("after switching: %d loads, loaded %q; want 3 and sd_xl", s.ModelLoads(), s.LoadedModel())
	}
	postJSON(t, s.URL()+"/free", `{"unload_models": true}`)
	run("sd_xl_base_1.0.safetensors", 5)
	if s.ModelLoads() != 4 {
		t.Errorf("after /free unload_models: %d loads, want 4", s.ModelLoads())
	}
}

func TestUnknownCheckpointRejected(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{Checkpoints: []string{"only.safetensors"}})
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+t2iPrompt("sd_xl_base_1.0.safetensors", 1, 1)+`}`)
	e := r.json(t).(*obj).sub("node_errors").sub("4").at("errors").([]any)[0].(*obj)
	if r.status != 400 || e.at("type") != "value_not_in_list" || e.at("details") != "ckpt_name: 'sd_xl_base_1.0.safetensors' not in ['only.safetensors']" {
		t.Errorf("%d %s", r.status, r.body)
	}
}

func TestRecordsPromptsAsSubmitted(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	prompt := `{"1": {"class_type": "EmptyImage", "inputs": {"width": "64", "height": 64, "batch_size": 1, "color": 0}},
  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "rec"}}}`
	body := `{"prompt": ` + prompt + `, "client_id": "gw", "prompt_id": "rec-1"}`
	postJSON(t, s.URL()+"/prompt", body)
	postJSON(t, s.URL()+"/prompt", `{"client_id": "gw"}`)
	got := s.Prompts()
	if len(got) != 2 {
		t.Fatalf("Prompts() has %d entries, want 2", len(got))
	}
	if string(got[0].Prompt) != prompt || string(got[0].Body) != body || got[0].PromptID != "rec-1" || got[0].ClientID != "gw" || got[0].Status != 200 {
		t.Errorf("first = %+v", got[0])
	}
	if got[1].Status != 400 || got[1].Prompt != nil {
		t.Errorf("second = %+v, want the rejected request without a prompt", got[1])
	}
	var parsed map[string]any
	if err := json.Unmarshal(got[0].Prompt, &parsed); err != nil {
		t.Errorf("recorded prompt is not JSON: %v", err)
	}
}

func TestSharedLogAcrossFleet(t *testing.T) {
	t.Parallel()
	log := NewLog()
	sims, err := StartFleet(2, "127.0.0.1:0", Options{Log: log, Name: "box"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(sims) })
	if sims[0].Name() != "box-1" || sims[1].Name() != "box-2" {
		t.Errorf("names %q %q, want box-1 box-2", sims[0].Name(), sims[1].Name())
	}
	for _, s := range sims {
		s.Hang("")
		postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(3, "f")+`, "prompt_id": "twice"}`)
		if _, err := s.WaitHanging(ctxFor(t)); err != nil {
			t.Fatal(err)
		}
	}
	if log.Count("twice") != 2 || fmt.Sprint(log.Duplicates()) != "[twice]" || fmt.Sprint(log.Overlaps()) != "[twice]" {
		t.Errorf("count %d, duplicates %v, overlaps %v", log.Count("twice"), log.Duplicates(), log.Overlaps())
	}
	for _, s := range sims {
		s.Release()
	}
	if err := log.WaitFinished(ctxFor(t), "twice", 2); err != nil {
		t.Fatal(err)
	}
	instances := map[string]bool{}
	for _, r := range log.Runs("twice") {
		instances[r.Instance] = true
	}
	if !instances["box-1"] || !instances["box-2"] {
		t.Errorf("runs on %v, want box-1 and box-2", instances)
	}
}

func TestSequentialRunsDoNotOverlap(t *testing.T) {
	t.Parallel()
	log := NewLog()
	s := startSim(t, Options{Log: log})
	ws := dialWS(t, s, "?clientId=gw")
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, submit(t, s, trivialPrompt(i, "seq"), "gw"))
	}
	ws.untilDone(t, ids[4])
	if len(log.Overlaps()) != 0 || len(log.Duplicates()) != 0 || log.Total() != 5 {
		t.Errorf("overlaps %v duplicates %v total %d", log.Overlaps(), log.Duplicates(), log.Total())
	}
	var prev Run
	for _, id := range ids {
		r := log.Runs(id)[0]
		if r.Start.Before(prev.End) {
			t.Errorf("%s started before the previous run ended: one prompt at a time", id)
		}
		prev = r
	}
}

func TestReconnectEvictionBug(t *testing.T) {
	t.Parallel()
	for _, safe := range []bool{false, true} {
		s := startSim(t, Options{SafeReconnect: safe})
		p := s.current()
		old := dialWS(t, s, "?clientId=same")
		old.next(t)
		fresh := dialWS(t, s, "?clientId=same")
		fresh.next(t)
		old.close()
		// Wait for the old socket's handler to finish (its finally block).
		if err := p.waitHub(ctxFor(t), func() bool { return p.live == 1 }); err != nil {
			t.Fatal(err)
		}
		p.hmu.Lock()
		_, registered := p.sockets["same"]
		p.hmu.Unlock()
		if registered != safe {
			t.Errorf("SafeReconnect=%v: new socket registered = %v, want %v", safe, registered, safe)
		}
	}
}

func TestWebSocketWithoutClientID(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "")
	f, _ := ws.next(t)
	sid, _ := f.field("sid").(string)
	if len(sid) != 32 || strings.Trim(sid, "0123456789abcdef") != "" {
		t.Errorf("sid %q, want 32 hex characters (uuid4().hex)", sid)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	req, _ := http.NewRequest("GET", s.URL()+"/queue", nil)
	req.Header.Set("Origin", "http://evil.example")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Errorf("status %d, want 403", res.StatusCode)
	}
	req.Header.Set("Origin", s.URL())
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("same origin: %v %v, want 200", res.StatusCode, err)
	}
	res.Body.Close()
}

func TestRequestTooLarge(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{MaxUploadSize: 1024})
	r := do(t, "POST", s.URL()+"/prompt", "application/json", bytes.Repeat([]byte(" "), 2048))
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", r.status)
	}
}

func TestClosedInstanceRefusesStart(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	if err := s.Restart(); err == nil {
		t.Error("Restart before Start succeeded")
	}
	s.Close()
	if err := s.Start("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Start after Close = %v, want an error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !errors.Is(sleepCtx(ctx, time.Hour), errAborted) {
		t.Error("sleepCtx ignores a done context")
	}
}

func TestHangOfFullyCachedPrompt(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	ws.untilDone(t, submit(t, s, trivialPrompt(4, "c"), "gw"))
	s.Hang("")
	id := submit(t, s, trivialPrompt(4, "c"), "gw")
	if _, err := s.WaitHanging(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	// No node is left to run: the interrupt has no boundary to land on.
	postJSON(t, s.URL()+"/interrupt", ``)
	fs := ws.untilDone(t, id)
	if find(fs, "execution_success").msg == nil || count(fs, "executing") != 1 {
		t.Errorf("frames %v, want a cached run that succeeds", frameTypes(fs))
	}
	if !s.Running() {
		t.Error("Running() = false for a serving instance")
	}
}
