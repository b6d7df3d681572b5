package comfysim

import (
	"strings"
	"testing"
	"time"
)

// holdWorker parks the worker in a hang so later prompts stay pending.
func holdWorker(t *testing.T, s *Sim) string {
	t.Helper()
	s.Hang("")
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(0, "hold")+`}`)
	id, _ := r.json(t).(*obj).str("prompt_id")
	if _, err := s.WaitHanging(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestQueueOrder(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	holdWorker(t, s) // number 0
	submitAs := func(id, extra string) string {
		r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "o")+`, "prompt_id": "`+id+`"`+extra+`}`)
		return string(r.body)
	}
	if got := submitAs("a", ""); !strings.Contains(got, `"number": 1,`) {
		t.Errorf("a: %s, want number 1", got)
	}
	submitAs("b", `, "front": true`) // -2
	submitAs("c", "")                // 3
	submitAs("d", `, "front": true`) // -4: the newest front item runs first
	if got := submitAs("e", `, "number": 2.5`); !strings.Contains(got, `"number": 2.5,`) {
		t.Errorf("e: %s, want the float echoed", got)
	}
	if got := submitAs("f", `, "number": 7`); !strings.Contains(got, `"number": 7.0,`) {
		t.Errorf("f: %s, want 7.0: a client number is stored as float", got)
	}
	postJSON(t, s.URL()+"/prompt", `{"prompt": {}}`) // rejected, still counts: 5
	if got := submitAs("g", ""); !strings.Contains(got, `"number": 6,`) {
		t.Errorf("g: %s, want number 6 (the rejected prompt used 5)", got)
	}
	pending := get(t, s.URL()+"/queue").json(t).(*obj).at("queue_pending").([]any)
	var heap []string
	for _, it := range pending {
		heap = append(heap, it.([]any)[1].(string))
	}
	// The raw heapq list, unsorted, exactly as Python leaves it after
	// pushing a(1) b(-2) c(3) d(-4) e(2.5) f(7.0) g(6) (checked with CPython).
	if got := strings.Join(heap, ""); got != "dbcaefg" {
		t.Errorf("queue_pending order %s, want the heapq layout dbcaefg", got)
	}
	s.Release()
	if err := s.Log().WaitFinished(ctxFor(t), "f", 1); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Log().PromptIDs()[1:], ""); got != "dbaecgf" {
		t.Errorf("run order %s, want dbaecgf (d=-4 b=-2 a=1 e=2.5 c=3 g=6 f=7)", got)
	}
}

func TestQueueDeleteAndClear(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=obs")
	ws.next(t)
	hold := holdWorker(t, s)
	postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "q")+`, "prompt_id": "p1"}`)
	postJSON(t, s.URL()+"/queue", `{"delete": ["p1", "unknown", "`+hold+`"]}`) // the running one is ignored
	postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "q")+`, "prompt_id": "p2"}`)
	postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(1, "q")+`, "prompt_id": "p3"}`)
	postJSON(t, s.URL()+"/queue", `{"clear": true}`)
	// put hold, pick it up, put p1, wipe (p1 was the last item) and status,
	// put p2, put p3, clear.
	want := []int64{1, 1, 2, 1, 1, 2, 3, 1}
	var got []int64
	for len(got) < len(want) {
		f, _ := ws.next(t)
		if f.typ == "status" {
			got = append(got, f.field("status").(*obj).sub("exec_info").at("queue_remaining").(int64))
		}
	}
	if pyRepr(anySlice(got)) != pyRepr(anySlice(want)) {
		t.Errorf("status queue_remaining %v, want %v: deleting the only pending item broadcasts twice", got, want)
	}
	q := get(t, s.URL()+"/queue").json(t).(*obj)
	if len(q.at("queue_pending").([]any)) != 0 || len(q.at("queue_running").([]any)) != 1 {
		t.Errorf("queue %s, want the running prompt only", encodePy(q))
	}
	s.Release()
	s.Log().WaitFinished(ctxFor(t), hold, 1)
	for _, id := range []string{"p1", "p2", "p3"} {
		if s.Log().Count(id) != 0 || string(get(t, s.URL()+"/history/"+id).body) != "{}" {
			t.Errorf("deleted prompt %s ran or has history", id)
		}
	}
}

func anySlice(v []int64) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

func TestHistoryRoutes(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{HistoryMax: 3})
	ws := dialWS(t, s, "?clientId=gw")
	var ids []string
	for i := 0; i < 5; i++ {
		id := submit(t, s, trivialPrompt(i, "h"), "gw")
		ws.untilDone(t, id)
		ids = append(ids, id)
	}
	keys := func(query string) string {
		return strings.Join(get(t, s.URL()+"/history"+query).json(t).(*obj).keys, ",")
	}
	// Capped like MAXIMUM_HISTORY_SIZE: the cap is checked before adding.
	if got, want := keys(""), strings.Join(ids[1:], ","); got != want {
		t.Errorf("history %s, want %s", got, want)
	}
	if got, want := keys("?max_items=2"), strings.Join(ids[3:], ","); got != want {
		t.Errorf("max_items=2: %s, want the newest two %s", got, want)
	}
	if got, want := keys("?max_items=2&offset=1"), strings.Join(ids[2:4], ","); got != want {
		t.Errorf("max_items=2&offset=1: %s, want %s", got, want)
	}
	if r := get(t, s.URL()+"/history?max_items=x"); r.status != 500 {
		t.Errorf("max_items=x: %d, want 500", r.status)
	}
	postJSON(t, s.URL()+"/history", `{"delete": ["`+ids[4]+`"]}`)
	if got := get(t, s.URL()+"/api/history/"+ids[4]); string(got.body) != "{}" {
		t.Errorf("deleted entry: %s", got.body)
	}
	postJSON(t, s.URL()+"/api/history", `{"clear": true}`)
	if got := keys(""); got != "" {
		t.Errorf("after clear: %s", got)
	}
}

func TestHistoryWrittenBeforeFinalExecuting(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	s.SetNodeDelay("SaveImage", 30*time.Millisecond)
	id := submit(t, s, trivialPrompt(5, "race"), "gw")
	if r := get(t, s.URL()+"/history/"+id); string(r.body) != "{}" {
		t.Errorf("history while queued or running = %s, want {}", r.body)
	}
	ws.untilDone(t, id)
	if r := get(t, s.URL()+"/history/"+id).json(t).(*obj); !r.has(id) {
		t.Error("no history entry once executing null arrived")
	}
}

func TestInterruptIsCooperative(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	s.SetNodeDelay("ImageInvert", 250*time.Millisecond)
	ws := dialWS(t, s, "?clientId=gw")
	// Interrupt while node 2 runs: it completes, node 3 is told executing and
	// then interrupted.
	id := submit(t, s, chainPrompt("i"), "gw")
	if err := s.WaitNodeStarted(ctxFor(t), id, "2"); err != nil {
		t.Fatal(err)
	}
	postJSON(t, s.URL()+"/interrupt", ``)
	fs := ws.untilDone(t, id)
	e := find(fs, "execution_interrupted")
	if e.field("node_id") != "3" || pyRepr(e.field("executed")) != "['1', '2']" {
		t.Errorf("execution_interrupted = %s, want node 3 after 1 and 2", e.data)
	}
	h := get(t, s.URL()+"/history/"+id).json(t).(*obj).sub(id).sub("status")
	if h.at("status_str") != "error" || h.at("completed") != false {
		t.Errorf("interrupted run history status %s, want error/false", encodePy(h))
	}
	// An interrupt during the last node's work is lost: the prompt succeeds.
	s.SetNodeDelay("PreviewImage", 100*time.Millisecond)
	id = submit(t, s, `{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
  "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}, "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}`, "gw")
	if err := s.WaitNodeStarted(ctxFor(t), id, "3"); err != nil {
		t.Fatal(err)
	}
	postJSON(t, s.URL()+"/interrupt", `{"prompt_id": "`+id+`"}`)
	if find(ws.untilDone(t, id), "execution_success").msg == nil {
		t.Error("an interrupt after the last node boundary was not lost")
	}
	// An interrupt while idle does not leak into the next prompt.
	postJSON(t, s.URL()+"/interrupt", `{}`)
	id = submit(t, s, trivialPrompt(3, "after"), "gw")
	if find(ws.untilDone(t, id), "execution_success").msg == nil {
		t.Error("an idle interrupt leaked into the next prompt")
	}
	in := s.Interrupts()
	if len(in) != 3 || in[0].PromptID != "" || !in[1].Applied || in[2].Running != "" {
		t.Errorf("Interrupts() = %+v", in)
	}
}

func TestInterruptDuringSamplerSteps(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{StepDelay: 20 * time.Millisecond})
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, t2iPrompt("dreamshaper_8.safetensors", 9, 50), "gw")
	ws.until(t, func(f wsFrameT) bool { return f.typ == "progress" && f.field("value") == int64(2) })
	postJSON(t, s.URL()+"/interrupt", ``)
	fs := ws.untilDone(t, id)
	if e := find(fs, "execution_interrupted"); e.field("node_id") != "3" {
		t.Errorf("execution_interrupted = %s, want the KSampler (3), mid-steps", e.data)
	}
	if n := count(fs, "progress"); n > 10 {
		t.Errorf("%d more progress frames after the interrupt; the step hook should stop it", n)
	}
}

func TestPromptWithoutClientIDBroadcastsProgressOnly(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=watcher")
	ws.next(t)
	r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+chainPrompt("anon")+`}`)
	id, _ := r.json(t).(*obj).str("prompt_id")
	if err := s.Log().WaitFinished(ctxFor(t), id, 1); err != nil {
		t.Fatal(err)
	}
	fs := ws.until(t, func(f wsFrameT) bool {
		return f.typ == "status" && f.field("status").(*obj).sub("exec_info").at("queue_remaining") == int64(0)
	})
	if got := strings.Join(typesOf(fs, "status"), ","); got != strings.TrimSuffix(strings.Repeat("progress_state,", 8), ",") {
		t.Errorf("a socket of another client got %s, want only the progress_state broadcasts", got)
	}
}
