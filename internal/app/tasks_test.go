package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// t2i is a typical text-to-image workflow; KSampler reports one progress
// message per step.
func t2i(steps int, prefix string) map[string]any {
	return map[string]any{
		"4": node("CheckpointLoaderSimple", map[string]any{"ckpt_name": "v1-5-pruned-emaonly.safetensors"}),
		"6": titled("CLIPTextEncode", "Positive", map[string]any{"text": "a cat", "clip": link("4", 1)}),
		"7": titled("CLIPTextEncode", "Negative", map[string]any{"text": "blurry", "clip": link("4", 1)}),
		"5": node("EmptyLatentImage", map[string]any{"width": 64, "height": 64, "batch_size": 1}),
		"3": node("KSampler", map[string]any{
			"seed": 1, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
			"model": link("4", 0), "positive": link("6", 0), "negative": link("7", 0), "latent_image": link("5", 0),
		}),
		"8": node("VAEDecode", map[string]any{"samples": link("3", 0), "vae": link("4", 2)}),
		"9": node("SaveImage", map[string]any{"images": link("8", 0), "filename_prefix": prefix}),
	}
}

// basic is the smallest valid workflow: an image, saved.
func basic(prefix string) map[string]any {
	return map[string]any{
		"1": node("EmptyImage", map[string]any{"width": 16, "height": 16, "batch_size": 1, "color": 255}),
		"2": node("SaveImage", map[string]any{"images": link("1", 0), "filename_prefix": prefix}),
	}
}

func node(class string, inputs map[string]any) map[string]any {
	return map[string]any{"class_type": class, "inputs": inputs}
}

func titled(class, title string, inputs map[string]any) map[string]any {
	n := node(class, inputs)
	n["_meta"] = map[string]any{"title": title}
	return n
}

func link(id string, slot int) []any { return []any{id, slot} }

type taskView struct {
	ID            string          `json:"id"`
	Owner         string          `json:"owner"`
	Status        string          `json:"status"`
	Progress      int             `json:"progress"`
	Priority      int             `json:"priority"`
	InstanceID    string          `json:"instanceId"`
	Attempts      int             `json:"attempts"`
	CreatedAt     string          `json:"createdAt"`
	StartedAt     *string         `json:"startedAt"`
	FinishedAt    *string         `json:"finishedAt"`
	Workflow      json.RawMessage `json:"workflow"`
	Params        json.RawMessage `json:"params"`
	QueuePosition *int            `json:"queuePosition"`
	Result        *struct {
		Files   []string `json:"files"`
		Outputs map[string][]struct {
			URL, Filename, Type, Kind, NodeID, FileID string
		} `json:"outputs"`
	} `json:"result"`
	Error *struct {
		Type          string                     `json:"type"`
		Message       string                     `json:"message"`
		NodeID        string                     `json:"nodeId"`
		NodeType      string                     `json:"nodeType"`
		NodeErrors    map[string]json.RawMessage `json:"nodeErrors"`
		ExceptionType string                     `json:"exceptionType"`
		Traceback     string                     `json:"traceback"`
	} `json:"error"`
}

func submit(e *apptest.Env, token string, body map[string]any) taskView {
	e.T.Helper()
	r := e.Do("POST", "/api/tasks", token, body)
	if r.Status != http.StatusOK {
		e.T.Fatalf("POST /api/tasks: %d %s", r.Status, r.Raw)
	}
	var v taskView
	r.Into(e.T, &v)
	return v
}

func getTask(e *apptest.Env, token, id string) taskView {
	e.T.Helper()
	r := e.Do("GET", "/api/tasks/"+id, token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /api/tasks/%s: %d %s", id, r.Status, r.Raw)
	}
	var v taskView
	r.Into(e.T, &v)
	return v
}

func waitStatus(e *apptest.Env, token, id, status string, timeout time.Duration) taskView {
	e.T.Helper()
	var v taskView
	e.Eventually(timeout, "task "+id+" "+status, func() bool {
		v = getTask(e, token, id)
		if v.Status != status && (v.Status == "completed" || v.Status == "failed" || v.Status == "cancelled") {
			e.T.Fatalf("task %s ended %s, want %s: %+v", id, v.Status, status, v.Error)
		}
		return v.Status == status
	})
	return v
}

func taskEvent(typ, id string) func(apptest.Message) bool {
	return func(m apptest.Message) bool {
		var d struct {
			TaskID string `json:"taskId"`
		}
		_ = json.Unmarshal(m.Data, &d)
		return m.Type == typ && d.TaskID == id
	}
}

func waitAlive(e *apptest.Env, token string) {
	e.T.Helper()
	e.Eventually(10*time.Second, "every instance alive", func() bool { return allAlive(e, token, len(e.Sims)) })
}

// TestTaskHappyPath: task_status running, task_progress rising,
// task_completed whose URLs download valid PNG bytes.
func TestTaskHappyPath(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2, Sim: comfysim.Options{StepDelay: 5 * time.Millisecond}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	ws := e.DialWS(admin)
	ws.WaitFor(5*time.Second, "global_status", func(m apptest.Message) bool { return m.Type == "global_status" })

	v := submit(e, admin, map[string]any{"workflow": t2i(20, "happy/run")})
	if v.Status != "pending" || v.Progress != 0 || v.Owner != apptest.AdminUser {
		t.Errorf("submitted task = %+v", v)
	}
	running := ws.WaitFor(10*time.Second, "task_status running", func(m apptest.Message) bool {
		return taskEvent("task_status", v.ID)(m) && strings.Contains(string(m.Data), `"running"`)
	})
	if !strings.Contains(string(running.Data), `"instanceId":"127.0.0.1:`) {
		t.Errorf("task_status running lacks the instance: %s", running.Data)
	}
	last, steps := -1, 0
	done := ws.WaitFor(20*time.Second, "task_completed", func(m apptest.Message) bool {
		if taskEvent("task_progress", v.ID)(m) {
			var d struct{ Progress int }
			_ = json.Unmarshal(m.Data, &d)
			if d.Progress < last || d.Progress > 99 {
				t.Errorf("progress went from %d to %d", last, d.Progress)
			}
			last, steps = d.Progress, steps+1
		}
		return taskEvent("task_completed", v.ID)(m)
	})
	if steps < 10 || last < 50 {
		t.Errorf("saw %d progress messages up to %d%%, want a rising series", steps, last)
	}
	var data struct {
		Result struct{ Files []string } `json:"result"`
	}
	_ = json.Unmarshal(done.Data, &data)
	if len(data.Result.Files) != 1 {
		t.Fatalf("task_completed files = %v", data.Result.Files)
	}
	assertPNG(t, data.Result.Files[0])

	got := getTask(e, admin, v.ID)
	if got.Status != "completed" || got.Progress != 100 || got.Attempts != 1 || got.FinishedAt == nil || got.StartedAt == nil {
		t.Errorf("completed task = %+v", got)
	}
	outs := got.Result.Outputs["9"]
	if len(outs) != 1 || outs[0].Type != "output" || outs[0].Kind != "images" || outs[0].URL != data.Result.Files[0] || !strings.HasSuffix(outs[0].Filename, ".png") {
		t.Errorf("outputs = %+v", got.Result.Outputs)
	}
	if n := e.SimLog.Count(v.ID); n != 1 {
		t.Errorf("simulator ran the task %d times", n)
	}
	// The output is a file of the task, listed by the files API.
	var files struct {
		Total int
		Items []struct {
			FileID string  `json:"fileId"`
			TaskID *string `json:"taskId"`
		}
	}
	e.Do("GET", "/api/files?taskId="+v.ID, admin, nil).Into(t, &files)
	if files.Total != 1 || files.Items[0].TaskID == nil || *files.Items[0].TaskID != v.ID {
		t.Errorf("files of the task = %+v", files)
	}
}

func assertPNG(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, err := png.Decode(resp.Body); err != nil {
		t.Errorf("%s is not a PNG: %v", url, err)
	}
}

// TestParamsReachInstance: overrides by node id and by title, and a fileId
// input uploaded to the instance, arrive in the prompt the simulator got.
func TestParamsReachInstance(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, user)

	v := submit(e, user, map[string]any{
		"workflow": t2i(2, "params/run"),
		"params":   map[string]any{"3.seed": 4242, "Positive.text": "a lighthouse at dusk"},
	})
	waitStatus(e, user, v.ID, "completed", 10*time.Second)
	prompt := receivedPrompt(t, e.Sims[0], v.ID)
	if got := prompt["3"].Inputs["seed"]; got != float64(4242) {
		t.Errorf("seed reached the instance as %v", got)
	}
	if got := prompt["6"].Inputs["text"]; got != "a lighthouse at dusk" {
		t.Errorf("Positive.text reached the instance as %v", got)
	}
	if got := prompt["7"].Inputs["text"]; got != "blurry" {
		t.Errorf("untouched input changed: %v", got)
	}

	fileID := upload(e, user, "in put.png", pngBytes(t))
	wf := map[string]any{
		"1": node("LoadImage", map[string]any{"image": "placeholder.png"}),
		"2": node("ImageInvert", map[string]any{"image": link("1", 0)}),
		"3": node("SaveImage", map[string]any{"images": link("2", 0), "filename_prefix": "params/loaded"}),
	}
	v2 := submit(e, user, map[string]any{"workflow": wf, "params": map[string]any{"1.image": map[string]string{"fileId": fileID}}})
	done := waitStatus(e, user, v2.ID, "completed", 10*time.Second)
	image, _ := receivedPrompt(t, e.Sims[0], v2.ID)["1"].Inputs["image"].(string)
	if !regexp.MustCompile(`^comfyfleet/[0-9a-f]{32}/in put\.png$`).MatchString(image) {
		t.Errorf("LoadImage.image = %q, want comfyfleet/<task folder>/in put.png (the instance's uploaded name)", image)
	}
	assertPNG(t, done.Result.Files[0])

	// Someone else's file is refused at submit.
	other := e.Login(apptest.User2, apptest.User2Pass)
	r := e.Do("POST", "/api/tasks", other, map[string]any{"workflow": wf, "params": map[string]any{"1.image": map[string]string{"fileId": fileID}}})
	wantError(t, r, http.StatusBadRequest, "invalid_field")
}

type simNode struct {
	ClassType string         `json:"class_type"`
	Inputs    map[string]any `json:"inputs"`
}

func receivedPrompt(t *testing.T, sim *comfysim.Sim, id string) map[string]simNode {
	t.Helper()
	for _, p := range sim.Prompts() {
		if p.PromptID != id || p.Status != 200 {
			continue
		}
		var body struct {
			Prompt   map[string]simNode `json:"prompt"`
			ClientID string             `json:"client_id"`
		}
		if err := json.Unmarshal(p.Body, &body); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(body.ClientID, "comfyfleet-") {
			t.Errorf("client_id = %q", body.ClientID)
		}
		return body.Prompt
	}
	t.Fatalf("the simulator never accepted prompt %s", id)
	return nil
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	// A 1x1 PNG.
	return []byte{0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
		0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
		0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
		0x4e, 0x44, 0xae, 0x42, 0x60, 0x82}
}

func upload(e *apptest.Env, token, name string, content []byte) string {
	e.T.Helper()
	r := uploadRaw(e, token, "file", name, content)
	if r.Status != http.StatusOK {
		e.T.Fatalf("upload: %d %s", r.Status, r.Raw)
	}
	var v struct {
		FileID string `json:"fileId"`
	}
	r.Into(e.T, &v)
	return v.FileID
}

func uploadRaw(e *apptest.Env, token, field, name string, content []byte) *apptest.Response {
	e.T.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile(field, name)
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest("POST", e.URL()+"/api/files/upload", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	out := &apptest.Response{Status: resp.StatusCode}
	out.Raw, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(out.Raw, &out.Body)
	return out
}

// TestFailures: a workflow that fails validation on every instance is
// refused at submit with ComfyUI's node_errors (no task); when no catalogue
// is known, the instance's own validation failure fails the task with
// nodeErrors (no retry); an execution_error fails with node id, type and
// message, and the exception's type and traceback.
func TestFailures(t *testing.T) {
	t.Parallel()
	sims, err := comfysim.StartFleet(1, "127.0.0.1:0", comfysim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sims[0].Close() })
	sims[0].FailHTTP("/object_info", 1<<30) // the gateway never learns the catalogue
	blind := apptest.Start(t, apptest.Options{Sims: sims})
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitCatalogs(e, admin)
	ws := e.DialWS(admin)

	bad := basic("fail/bad")
	bad["3"] = node("ImageScale", map[string]any{"image": link("1", 0), "upscale_method": "foo", "width": 8, "height": 8, "crop": "disabled"})
	bad["4"] = node("SaveImage", map[string]any{"images": link("3", 0), "filename_prefix": "fail/bad2"})
	bad["1"].(map[string]any)["inputs"].(map[string]any)["width"] = 0
	r := e.Do("POST", "/api/tasks", admin, map[string]any{"workflow": bad})
	wantError(t, r, http.StatusBadRequest, "invalid_workflow")
	var refused struct {
		Type       string                     `json:"type"`
		NodeErrors map[string]json.RawMessage `json:"nodeErrors"`
	}
	r.Into(t, &refused)
	if refused.Type != "prompt_outputs_failed_validation" || refused.NodeErrors["1"] == nil || refused.NodeErrors["3"] == nil {
		t.Errorf("refusal = %s, want prompt_outputs_failed_validation with node_errors of 1 and 3", r.Raw)
	}

	badmin := blind.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(blind, badmin)
	v := submit(blind, badmin, map[string]any{"workflow": bad})
	got := waitStatus(blind, badmin, v.ID, "failed", 10*time.Second)
	if got.Error == nil || got.Error.Type != "prompt_outputs_failed_validation" || got.Error.NodeErrors["1"] == nil || got.Error.NodeErrors["3"] == nil {
		t.Errorf("validation failure error = %+v", got.Error)
	}
	if got.Attempts != 1 || blind.SimLog.Count(v.ID) != 0 {
		t.Errorf("validation failure attempts=%d runs=%d, want 1 and 0", got.Attempts, blind.SimLog.Count(v.ID))
	}

	e.Sims[0].FailNode("ImageInvert", "boom from the test")
	wf := basic("fail/exec")
	wf["3"] = node("ImageInvert", map[string]any{"image": link("1", 0)})
	wf["2"] = node("SaveImage", map[string]any{"images": link("3", 0), "filename_prefix": "fail/exec"})
	v2 := submit(e, admin, map[string]any{"workflow": wf})
	got = waitStatus(e, admin, v2.ID, "failed", 10*time.Second)
	if got.Error == nil || got.Error.Type != "execution_error" || got.Error.NodeID != "3" || got.Error.NodeType != "ImageInvert" ||
		!strings.Contains(got.Error.Message, "boom from the test") {
		t.Errorf("execution error = %+v", got.Error)
	}
	if got.Error == nil || got.Error.ExceptionType != "RuntimeError" ||
		!strings.HasPrefix(got.Error.Traceback, `  File "/srv/ComfyUI/execution.py"`) || !strings.Contains(got.Error.Traceback, "in ImageInvert\n") {
		t.Errorf("execution error lost what ComfyUI said: %+v", got.Error)
	}
	failed := ws.WaitFor(5*time.Second, "task_failed", taskEvent("task_failed", v2.ID))
	if !strings.Contains(string(failed.Data), `"exceptionType":"RuntimeError"`) || !strings.Contains(string(failed.Data), `"traceback":"  File `) {
		t.Errorf("task_failed = %s, want the exception type and traceback", failed.Data)
	}
	e.Sims[0].ClearFaults()
}

// TestTimeout: a run past its timeout is interrupted on the instance and
// fails with type timeout.
func TestTimeout(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{StepDelay: 50 * time.Millisecond}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	v := submit(e, admin, map[string]any{"workflow": t2i(200, "timeout/run"), "timeout": 300})
	got := waitStatus(e, admin, v.ID, "failed", 10*time.Second)
	if got.Error == nil || got.Error.Type != "timeout" {
		t.Errorf("error = %+v, want type timeout", got.Error)
	}
	if !sawInterrupt(e.Sims[0], v.ID) {
		t.Errorf("the simulator saw no interrupt for %s: %+v", v.ID, e.Sims[0].Interrupts())
	}
	if runs := e.SimLog.Runs(v.ID); len(runs) != 1 || runs[0].Outcome != comfysim.OutcomeInterrupted {
		t.Errorf("runs = %+v, want one interrupted", runs)
	}
}

func sawInterrupt(sim *comfysim.Sim, id string) bool {
	for _, in := range sim.Interrupts() {
		if in.PromptID == id {
			return true
		}
	}
	return false
}

// TestCancel: a pending task is cancelled at once; a running one is
// interrupted on its instance and ends cancelled; a finished one is 409.
func TestCancel(t *testing.T) {
	t.Parallel()
	// Without prefetch the second task waits in the gateway's queue
	// (TestPrefetchCancelQueued cancels one waiting in ComfyUI's).
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{StepDelay: 20 * time.Millisecond},
		Configure: noPrefetch})
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, user)
	ws := e.DialWS(user)

	running := submit(e, user, map[string]any{"workflow": t2i(500, "cancel/a")})
	pending := submit(e, user, map[string]any{"workflow": basic("cancel/b")})
	waitStatus(e, user, running.ID, "running", 10*time.Second)
	if p := getTask(e, user, pending.ID); p.Status != "pending" || p.QueuePosition == nil || *p.QueuePosition != 1 {
		t.Fatalf("second task = %+v, want pending at position 1", p)
	}

	r := e.Do("DELETE", "/api/tasks/"+pending.ID, user, nil)
	var c struct {
		taskView
		TaskID          string `json:"taskId"`
		CancelRequested bool   `json:"cancelRequested"`
	}
	r.Into(t, &c)
	if r.Status != 200 || c.Status != "cancelled" || c.TaskID != pending.ID || c.CancelRequested || r.Body.Message == "" {
		t.Errorf("cancel pending: %d %s", r.Status, r.Raw)
	}
	ws.WaitFor(5*time.Second, "task_cancelled (pending)", taskEvent("task_cancelled", pending.ID))

	// A running task's DELETE says a cancel was requested: the task runs
	// until its instance confirms.
	r = e.Do("DELETE", "/api/tasks/"+running.ID, user, nil)
	var req struct {
		taskView
		TaskID          string `json:"taskId"`
		CancelRequested bool   `json:"cancelRequested"`
	}
	r.Into(t, &req)
	if r.Status != 200 || r.Body.Code != 200 || req.TaskID != running.ID || req.ID != running.ID ||
		req.Status != "running" || !req.CancelRequested || !strings.Contains(r.Body.Message, "Cancel requested") {
		t.Errorf("cancel running: %d %s, want 200 with the running task, cancelRequested and a message", r.Status, r.Raw)
	}
	if r := e.Do("DELETE", "/api/tasks/"+pending.ID, user, nil); r.Status != http.StatusConflict {
		t.Errorf("cancel a cancelled task again: %d %s, want 409", r.Status, r.Raw)
	}
	ws.WaitFor(10*time.Second, "task_cancelled (running)", taskEvent("task_cancelled", running.ID))
	if got := getTask(e, user, running.ID); got.Status != "cancelled" {
		t.Errorf("running task after cancel = %s", got.Status)
	}
	if !sawInterrupt(e.Sims[0], running.ID) {
		t.Errorf("no interrupt for %s reached the simulator", running.ID)
	}
	if e.SimLog.Count(pending.ID) != 0 {
		t.Error("the cancelled pending task ran")
	}
	wantError(t, e.Do("DELETE", "/api/tasks/"+running.ID, user, nil), http.StatusConflict, "task_finished")
	// Someone else's task is invisible.
	other := e.Login(apptest.User2, apptest.User2Pass)
	wantError(t, e.Do("DELETE", "/api/tasks/"+running.ID, other, nil), http.StatusNotFound, "task_not_found")
	wantError(t, e.Do("GET", "/api/tasks/"+running.ID, other, nil), http.StatusNotFound, "task_not_found")

	// The instance is free again and takes the next task.
	next := submit(e, user, map[string]any{"workflow": basic("cancel/c")})
	waitStatus(e, user, next.ID, "completed", 10*time.Second)
}

// TestPriorityOrder: with one instance and a backlog, higher priority runs
// first, FIFO within a priority.
func TestPriorityOrder(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	id := e.Sims[0].Addr()
	e.Do("PUT", "/api/instances/"+id, admin, map[string]bool{"enabled": false})
	prios := []int{0, 5, 1, 5, 10, 0}
	ids := make([]string, len(prios))
	for i, p := range prios {
		ids[i] = submit(e, admin, map[string]any{"workflow": basic(fmt.Sprintf("prio/%d", i)), "priority": p}).ID
	}
	if p := getTask(e, admin, ids[4]); p.QueuePosition == nil || *p.QueuePosition != 1 {
		t.Errorf("priority 10 task position = %v, want 1", p.QueuePosition)
	}
	e.Do("PUT", "/api/instances/"+id, admin, map[string]bool{"enabled": true})
	for _, tid := range ids {
		waitStatus(e, admin, tid, "completed", 10*time.Second)
	}
	want := []string{ids[4], ids[1], ids[3], ids[2], ids[0], ids[5]}
	for i := 1; i < len(want); i++ {
		a, b := e.SimLog.Runs(want[i-1]), e.SimLog.Runs(want[i])
		if len(a) != 1 || len(b) != 1 || !a[0].Start.Before(b[0].Start) {
			t.Errorf("run %d (%s) did not start before run %d (%s)", i-1, want[i-1], i, want[i])
		}
	}
}

// TestInstanceKilledMidRun: the task completes on another instance, and it
// never ran on two instances at once.
func TestInstanceKilledMidRun(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2, Sim: comfysim.Options{StepDelay: 20 * time.Millisecond}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	v := submit(e, admin, map[string]any{"workflow": t2i(100, "killed/run")})
	running := waitStatus(e, admin, v.ID, "running", 10*time.Second)
	var victim *comfysim.Sim
	for _, s := range e.Sims {
		if s.Addr() == running.InstanceID {
			victim = s
		}
	}
	if victim == nil {
		t.Fatalf("task runs on %q, not a simulator", running.InstanceID)
	}
	e.Eventually(5*time.Second, "the run to start on the simulator", func() bool { return e.SimLog.Count(v.ID) == 1 })
	victim.Stop()
	done := waitStatus(e, admin, v.ID, "completed", 20*time.Second)
	if done.InstanceID == running.InstanceID || done.Attempts != 2 {
		t.Errorf("completed on %s after %d attempts, want the other instance and 2 attempts", done.InstanceID, done.Attempts)
	}
	if o := e.SimLog.Overlaps(); len(o) != 0 {
		t.Errorf("ran on two instances at once: %v", o)
	}
	runs := e.SimLog.Runs(v.ID)
	if len(runs) != 2 || runs[0].Outcome != comfysim.OutcomeAborted || runs[1].Outcome != comfysim.OutcomeSuccess {
		t.Errorf("runs = %+v, want an aborted run then a success", runs)
	}
}

// TestRestartReattaches: a gateway killed mid-run picks the run up again
// when it comes back, and the task runs once.
func TestRestartReattaches(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{StepDelay: 10 * time.Millisecond}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	v := submit(e, admin, map[string]any{"workflow": t2i(100, "restart/run")})
	e.Eventually(10*time.Second, "the run to start on the simulator", func() bool { return e.SimLog.Count(v.ID) == 1 })
	e.CrashRestart()
	admin = e.Login(apptest.AdminUser, apptest.AdminPass)
	done := waitStatus(e, admin, v.ID, "completed", 20*time.Second)
	if e.SimLog.Count(v.ID) != 1 || done.Attempts != 1 {
		t.Errorf("runs=%d attempts=%d, want 1 and 1", e.SimLog.Count(v.ID), done.Attempts)
	}
	assertPNG(t, done.Result.Files[0])
}

// TestManyTasks: 2,000 tasks over 16 instances all complete, each once.
func TestManyTasks(t *testing.T) {
	t.Parallel()
	const n = 2000
	e := apptest.Start(t, apptest.Options{Instances: 16, Configure: func(c *config.Config) {
		c.HealthCheck.Interval = config.Millis(time.Second)
		c.HealthCheck.Timeout = config.Millis(time.Second)
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	start := time.Now()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = submit(e, admin, map[string]any{"workflow": basic(fmt.Sprintf("many/%d", i))}).ID
	}
	t.Logf("submitted %d tasks in %v", n, time.Since(start))
	e.Eventually(120*time.Second, "all tasks completed", func() bool {
		var o struct{ CompletedTasks int }
		e.Do("GET", "/api/monitor/overview", admin, nil).Into(t, &o)
		return o.CompletedTasks == n
	})
	took := time.Since(start)
	t.Logf("%d tasks over %d instances in %v: %.0f tasks/s (submit included, one client, -race=%v)", n, len(e.Sims), took, n/took.Seconds(), raceEnabled)
	for _, id := range ids {
		if c := e.SimLog.Count(id); c != 1 {
			t.Errorf("task %s ran %d times", id, c)
		}
	}
	if o := e.SimLog.Overlaps(); len(o) != 0 {
		t.Errorf("overlapping runs: %v", o)
	}
}

// TestHistoryUnreadableAtFirst: the instance is handed the next task as soon
// as ComfyUI says a prompt is done, and a run whose history cannot be read
// at first retries on its own until it can: the task completes, ran once,
// and the next task did not wait for it.
func TestHistoryUnreadableAtFirst(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	e.Sims[0].FailHTTP("/history/", 3)
	first := submit(e, admin, map[string]any{"workflow": basic("history/first")})
	second := submit(e, admin, map[string]any{"workflow": basic("history/second")})
	done := waitStatus(e, admin, first.ID, "completed", 15*time.Second)
	if len(done.Result.Files) != 1 {
		t.Errorf("first task result %+v, want one file", done.Result)
	}
	waitStatus(e, admin, second.ID, "completed", 15*time.Second)
	if n := e.SimLog.Count(first.ID); n != 1 {
		t.Errorf("first task ran %d times, want 1", n)
	}
	a, b := e.SimLog.Runs(first.ID), e.SimLog.Runs(second.ID)
	if len(a) == 1 && len(b) == 1 && b[0].Start.Before(a[0].End) {
		t.Errorf("second task started before the first ended on the one instance")
	}
}
