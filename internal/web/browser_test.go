package web_test

// Browser tests: real headless Chromium against the demo setup. Each test
// boots its own gateway and simulators, so each has its own origin (and
// so its own localStorage). Screenshots go to $ARTIFACTS_DIR or
// <repo>/artifacts/web.

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

const (
	short = 15 * time.Second
	long  = 45 * time.Second
)

func TestLoginSeesInstancesAlive(t *testing.T) {
	d := startDemo(t, 3, comfysim.Options{})
	p := newPage(t, d)

	// A deep link without a session goes to the login screen and back.
	p.open("#/instances")
	p.waitJS("the login form", `location.hash.startsWith('#/login') && !!document.querySelector('#login-username')`, short)
	p.shot("login")
	p.login("admin", "admin123")
	p.waitJS("the instances route", `location.hash === '#/instances'`, short)
	p.waitJS("three alive instances", `document.querySelectorAll('#instances tbody tr[data-alive="true"]').length === 3`, long)
	p.waitJS("the summary", `document.querySelector('#instances-summary').textContent.startsWith('3/3 alive')`, short)
	if got := p.text(`#instances tbody tr`); !strings.Contains(got, "Simulated GPU box") || !strings.Contains(got, "127.0.0.1:") {
		t.Errorf("first instance row = %q, want server name and address", got)
	}
	// Heartbeats are shown once the health checker has probed.
	p.waitJS("a heartbeat", `[...document.querySelectorAll('#instances tbody time')].every(e => e.getAttribute('datetime'))`, long)
	// What each instance can run: its catalogue, read when it came up.
	p.waitJS("the catalogues", `[...document.querySelectorAll('#instances tbody tr')].every(tr =>
		/378 node classes · 3 checkpoints/.test(tr.querySelector('[data-field="catalog"]')?.textContent || ''))`, long)
	p.shot("instances")

	// The overview counts come live from /ws.
	p.goRoute("#/")
	p.waitJS("the overview counts", `document.querySelector('[data-kpi="aliveInstances"] .value')?.textContent === '3'`, short)
	p.waitJS("the live indicator", `document.querySelector('#conn')?.dataset.state === 'open'`, short)
	p.waitJS("the chart", `!!document.querySelector('.chart svg')`, short)
	p.waitJS("the fleet dots", `document.querySelectorAll('#fleet-dots .fleet-dot[data-state="idle"]').length === 3`, short)
	p.shot("overview")

	if got := eval[string](p, `JSON.parse(localStorage.getItem('comfyfleet.session')).user.role`); got != "admin" {
		t.Errorf("stored role = %q, want admin", got)
	}
}

func TestBadLoginShowsError(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	p := newPage(t, d)
	p.open("")
	p.do(
		chromedp.WaitVisible(chromedp.CSS("#login-username")),
		chromedp.SendKeys(chromedp.CSS("#login-username"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "not-the-password"),
		chromedp.Click(chromedp.CSS("#login-submit")),
	)
	p.waitJS("the login error", `document.querySelector('#login-error').textContent.includes('Wrong username or password')`, short)
	p.shot("error")
	if got := eval[bool](p, `localStorage.getItem('comfyfleet.session') === null`); !got {
		t.Error("a failed login stored a session")
	}
	if got := eval[string](p, `document.activeElement.id`); got != "login-password" {
		t.Errorf("focus after a failed login is on %q, want the password", got)
	}
	// An empty form is checked before any request.
	p.do(chromedp.Click(chromedp.CSS("#login-submit")))
	p.waitJS("the empty-form message", `document.querySelector('#login-error').textContent.includes('Enter your username and password')`, short)
}

func TestSubmitWatchProgressAndOutput(t *testing.T) {
	d := startDemo(t, 2, comfysim.Options{NodeDelay: 20 * time.Millisecond, StepDelay: 40 * time.Millisecond})
	p := newPage(t, d)
	p.open("#/submit")
	p.login("admin", "admin123")
	p.waitJS("the submit form", `location.hash === '#/submit' && !!document.querySelector('#workflow')`, short)

	// The example workflow, with a param by node title and a priority.
	p.click("#load-example")
	p.waitJS("the parsed workflow", `document.querySelector('#workflow-summary').textContent.includes('7 nodes')`, short)
	p.click("#add-param")
	p.do(
		chromedp.SendKeys(chromedp.CSS("#param-rows .param-row:last-child .pkey"), "KSampler.steps"),
		chromedp.SendKeys(chromedp.CSS("#param-rows .param-row:last-child .pval"), "30"),
	)
	p.waitJS("the param hint", `document.querySelector('#param-rows .param-row:last-child .cur').textContent.includes('KSampler #3')`, short)
	p.do(chromedp.SetValue(chromedp.CSS("#priority"), "5"))
	p.shot("form")

	// Record every value the progress bar and the step line show from now on.
	eval[any](p, `(() => {
	  window.__seen = [];
	  window.__steps = [];
	  const note = () => {
	    const b = document.querySelector('#task-progress');
	    if (b) window.__seen.push(Number(b.getAttribute('aria-valuenow')));
	    const s = document.querySelector('#task-step')?.textContent;
	    if (s && s !== window.__steps[window.__steps.length - 1]) window.__steps.push(s);
	  };
	  new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow'] });
	})()`)
	p.click("#submit-task")
	p.waitJS("the task page", `/^#\/tasks\/[0-9a-f-]{36}$/.test(location.hash)`, short)
	id := eval[string](p, `location.hash.slice('#/tasks/'.length)`)

	p.waitJS("a running task", `['running','completed'].includes(document.querySelector('#task-detail .badge, .page-head .badge')?.dataset.status)`, long)
	p.waitJS("progress 100%", `document.querySelector('#task-progress')?.getAttribute('aria-valuenow') === '100'`, long)
	p.waitJS("the completed status", `document.querySelector('.page-head .badge')?.dataset.status === 'completed'`, long)
	p.waitJS("the output image", `[...document.querySelectorAll('#task-outputs img')].some(i => i.complete && i.naturalWidth > 0)`, long)
	p.shot("completed")

	seen := eval[[]int](p, `window.__seen`)
	partial := false
	for i, v := range seen {
		if v > 0 && v < 100 {
			partial = true
		}
		if i > 0 && v < seen[i-1] {
			t.Errorf("progress went down: %v", seen)
			break
		}
	}
	if !partial {
		t.Errorf("the progress bar never showed a value between 0 and 100 (saw %v): task_progress did not reach the page", seen)
	}
	// The step line names the sampler and its step (30: the param's value).
	steps := eval[[]string](p, `window.__steps`)
	if !slices.ContainsFunc(steps, regexp.MustCompile(`^KSampler #3: step \d+ of 30$`).MatchString) {
		t.Errorf("the step line never showed the sampler's step; it showed %q", steps)
	}
	if got := p.text("#task-params"); !strings.Contains(got, "KSampler.steps") || !strings.Contains(got, "30") {
		t.Errorf("params panel = %q, want KSampler.steps = 30", got)
	}

	var tv struct {
		Priority int `json:"priority"`
		Result   struct {
			Files []string `json:"files"`
		} `json:"result"`
	}
	d.mustCall("GET", "/api/tasks/"+id, nil, &tv)
	if tv.Priority != 5 || len(tv.Result.Files) == 0 {
		t.Errorf("task via REST: priority %d, files %v; want 5 and an image", tv.Priority, tv.Result.Files)
	}

	// The list shows it completed at 100%.
	p.goRoute("#/tasks")
	p.waitJS("the task row", fmt.Sprintf(`document.querySelector('#tasks tr[data-task-id=%q]')?.dataset.status === 'completed'`, id), short)
	if got := eval[string](p, fmt.Sprintf(`document.querySelector('#tasks tr[data-task-id=%q] [role=progressbar]').getAttribute('aria-valuenow')`, id)); got != "100" {
		t.Errorf("list progress = %s, want 100", got)
	}
	p.shot("tasks")
	p.goRoute("#/")
	p.waitJS("the completed count", `document.querySelector('[data-kpi="completedTasks"] .value')?.textContent === '1'`, short)
	p.click(`.chip[data-span="5m"]`)
	p.waitJS("the 5-minute chart", `document.querySelector('.chart')?.getAttribute('aria-label').includes('5 minutes') && !!document.querySelector('.chart .rate-line')`, short)
	p.waitJS("the throughput", `document.querySelector('#rate-now').textContent === '1'`, short)
	p.shot("overview")
}

// TestLivePreviewOnTaskPage: with previews on at the instances, a running
// sampler's task page shows its latest preview, updated from task_preview,
// and drops it once the task is done.
func TestLivePreviewOnTaskPage(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{PreviewMethod: "auto", StepDelay: 40 * time.Millisecond})
	task := d.submit(t2i(100), nil, 0) // 4 s of sampling
	t.Cleanup(func() { d.call("DELETE", "/api/tasks/"+task.ID, nil) })
	p := newPage(t, d)
	p.open("#/tasks/" + task.ID)
	p.login("admin", "admin123")
	p.waitJS("a live preview", `(() => { const i = document.querySelector('#task-preview'); return !!i && i.complete && i.naturalWidth > 0 && i.src.startsWith('data:image/jpeg;base64,'); })()`, long)
	first := eval[string](p, `document.querySelector('#task-preview').src`)
	p.waitJS("a newer preview", fmt.Sprintf(`document.querySelector('#task-preview')?.src !== %q`, first), long)
	if got := p.text("#task-live"); !strings.Contains(got, "KSampler #3") {
		t.Errorf("live preview panel = %q, want the sampler named", got)
	}
	p.shot("preview")
	p.waitJS("the completed status", `document.querySelector('.page-head .badge')?.dataset.status === 'completed'`, long)
	p.waitJS("no live preview", `!document.querySelector('#task-live')`, short)
}

func TestCancelPendingTask(t *testing.T) {
	// One instance, busy with a long run, and no prefetch, so the next task
	// waits in the gateway's queue.
	d := startDemoWith(t, 1, comfysim.Options{StepDelay: 100 * time.Millisecond}, func(c *config.Config) {
		zero := 0
		c.Scheduler.Prefetch = &zero
	})
	blocker := d.submit(t2i(400), nil, 0)
	t.Cleanup(func() { d.call("DELETE", "/api/tasks/"+blocker.ID, nil) })
	waiting := d.submit(t2i(5), nil, 0)
	if waiting.Status != "pending" {
		t.Fatalf("second task is %s, want pending", waiting.Status)
	}

	p := newPage(t, d)
	p.open("#/tasks?status=pending")
	p.login("admin", "admin123")
	row := fmt.Sprintf(`#tasks tr[data-task-id=%q]`, waiting.ID)
	p.waitJS("the pending row", fmt.Sprintf(`document.querySelector(%q)?.dataset.status === 'pending'`, row), short)
	p.waitJS("the pending filter", `document.querySelector('.chip[data-status="pending"]').getAttribute('aria-pressed') === 'true'`, short)
	p.shot("pending")
	p.click(row + ` [data-action="cancel"]`)
	p.waitJS("the confirm dialog", `document.querySelector('dialog[open]')?.textContent.includes('removed from the queue')`, short)
	p.shot("confirm")
	p.confirm()
	p.waitJS("the cancelled row", fmt.Sprintf(`document.querySelector(%q)?.dataset.status === 'cancelled'`, row), short)
	p.waitJS("no cancel button", fmt.Sprintf(`!document.querySelector(%q)`, row+` [data-action="cancel"]`), short)
	p.shot("cancelled")

	var tv taskView
	d.mustCall("GET", "/api/tasks/"+waiting.ID, nil, &tv)
	if tv.Status != "cancelled" {
		t.Errorf("task via REST is %s, want cancelled", tv.Status)
	}

	// The running one can be cancelled from its page: it is interrupted.
	p.goRoute("#/tasks/" + blocker.ID)
	p.waitJS("the running task", `document.querySelector('.page-head .badge')?.dataset.status === 'running'`, long)
	p.click("#task-cancel")
	p.waitJS("the interrupt dialog", `document.querySelector('dialog[open]')?.textContent.includes('interrupted')`, short)
	p.confirm()
	p.waitJS("the interrupted task", `document.querySelector('.page-head .badge')?.dataset.status === 'cancelled'`, long)
	p.shot("interrupted")
}

// TestPendingTaskShowsETA: once a run of its shape was seen, a pending
// task shows when it is expected to start, in the list and on its page.
func TestPendingTaskShowsETA(t *testing.T) {
	d := startDemoWith(t, 1, comfysim.Options{StepDelay: 100 * time.Millisecond}, func(c *config.Config) {
		zero := 0
		c.Scheduler.Prefetch = &zero
	})
	first := d.submit(t2i(2), nil, 0)
	d.waitStatus(first.ID, "completed", long)
	blocker := d.submit(t2i(400), nil, 0)
	t.Cleanup(func() { d.call("DELETE", "/api/tasks/"+blocker.ID, nil) })
	waiting := d.submit(t2i(3), nil, 0)

	p := newPage(t, d)
	p.open("#/tasks?status=pending")
	p.login("admin", "admin123")
	row := fmt.Sprintf(`#tasks tr[data-task-id=%q]`, waiting.ID)
	p.waitJS("the pending row's estimate", fmt.Sprintf(`/^starts /.test(document.querySelector(%q)?.textContent || '')`, row+` [data-field="eta"]`), short)
	if title := eval[string](p, fmt.Sprintf(`document.querySelector(%q).title`, row+` [data-field="eta"]`)); !strings.Contains(title, "Estimated start") || !strings.Contains(title, "finish") {
		t.Errorf("estimate's title = %q, want the estimated start and finish", title)
	}
	p.shot("list")

	p.goRoute("#/tasks/" + waiting.ID)
	p.waitJS("the estimates", `!!document.querySelector('#eta-start') && !!document.querySelector('#eta-finish')`, short)
	p.waitJS("the waiting line", `/position 1\); starts /.test(document.querySelector('#task-step').textContent)`, short)
	// The start moves with the clock (the blocker ran past its expected
	// end), the expected run time does not.
	var tv struct {
		EstimatedStart, EstimatedFinish time.Time
	}
	d.mustCall("GET", "/api/tasks/"+waiting.ID, nil, &tv)
	shown := eval[float64](p, `Date.parse(document.querySelector('#eta-finish').title) - Date.parse(document.querySelector('#eta-start').title)`)
	if api := tv.EstimatedFinish.Sub(tv.EstimatedStart).Milliseconds(); math.Abs(shown-float64(api)) > 1 {
		t.Errorf("estimated run shown %v ms, the API says %v ms", shown, api)
	}
	p.shot("page")
}

func TestTaskListPagesAndLiveRows(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	var inst []struct {
		ID string `json:"id"`
	}
	d.mustCall("GET", "/api/instances", nil, &inst)
	// With the only instance disabled every task waits.
	d.mustCall("PUT", "/api/instances/"+inst[0].ID, map[string]bool{"enabled": false}, nil)
	for i := range 23 {
		d.submit(t2i(2), nil, i%3)
	}

	p := newPage(t, d)
	p.open("#/tasks")
	p.login("admin", "admin123")
	p.waitJS("the first page", `document.querySelector('#tasks-range').textContent === '1–20 of 23' && document.querySelectorAll('#tasks tbody tr.task-row').length === 20`, short)
	p.waitJS("the pending count", `document.querySelector('.chip[data-status="pending"] .n').textContent === '23'`, short)
	p.click("#tasks-next")
	p.waitJS("the second page", `document.querySelector('#tasks-range').textContent === '21–23 of 23' && location.hash.includes('offset=20')`, short)
	p.shot("page-2")
	p.click("#tasks-prev")
	p.waitJS("the first page again", `document.querySelector('#tasks-range').textContent === '1–20 of 23'`, short)

	// A task submitted elsewhere appears on the first page by itself.
	extra := d.submit(t2i(2), nil, 9)
	p.waitJS("the new row", fmt.Sprintf(`!!document.querySelector('#tasks tr[data-task-id=%q]')`, extra.ID), short)
	p.waitJS("the new total", `document.querySelector('#tasks-range').textContent === '1–20 of 24'`, short)

	// Enabling the instance runs them: rows turn completed live.
	d.mustCall("PUT", "/api/instances/"+inst[0].ID, map[string]bool{"enabled": true}, nil)
	p.waitJS("a completed row", `!!document.querySelector('#tasks tr.task-row[data-status="completed"]')`, long)
	p.shot("running")
	// Filter by two statuses.
	p.click(`.chip[data-status="all"]`)
	p.click(`.chip[data-status="completed"]`)
	p.click(`.chip[data-status="failed"]`)
	p.waitJS("the filtered URL", `location.hash.includes('status=completed%2Cfailed') || location.hash.includes('status=completed,failed')`, short)
	p.waitJS("only finished rows", `[...document.querySelectorAll('#tasks tr.task-row')].every(r => ['completed','failed'].includes(r.dataset.status))`, short)
}

func TestDisableInstance(t *testing.T) {
	d := startDemo(t, 2, comfysim.Options{})
	var inst []struct {
		ID      string `json:"id"`
		Enabled bool   `json:"enabled"`
	}
	d.mustCall("GET", "/api/instances", nil, &inst)
	first := inst[0].ID

	p := newPage(t, d)
	p.open("#/instances")
	p.login("admin", "admin123")
	row := fmt.Sprintf(`#instances tr[data-instance-id=%q]`, first)
	p.waitJS("alive instances", `document.querySelectorAll('#instances tbody tr[data-alive="true"]').length === 2`, long)
	p.click(row + ` input.enable-toggle`)
	p.waitJS("the disabled row", fmt.Sprintf(`document.querySelector(%q)?.dataset.enabled === 'false' && document.querySelector(%q).textContent.includes('disabled')`, row, row), short)
	p.waitJS("the summary", `document.querySelector('#instances-summary').textContent.includes('1 enabled')`, short)
	p.shot("disabled")

	var v struct {
		Enabled bool `json:"enabled"`
	}
	d.mustCall("GET", "/api/instances/"+first, nil, &v)
	if v.Enabled {
		t.Error("the instance is still enabled through REST")
	}

	// A change made elsewhere shows up live (instance_status).
	d.mustCall("PUT", "/api/instances/"+first, map[string]bool{"enabled": true}, nil)
	p.waitJS("the re-enabled row", fmt.Sprintf(`document.querySelector(%q)?.dataset.enabled === 'true' && document.querySelector(%q).checked`, row, row+` input.enable-toggle`), short)

	// The overview agrees.
	p.click(row + ` input.enable-toggle`)
	p.waitJS("the disabled row again", fmt.Sprintf(`document.querySelector(%q)?.dataset.enabled === 'false'`, row), short)
	p.goRoute("#/")
	p.waitJS("the disabled dot", fmt.Sprintf(`document.querySelector('#fleet-dots [data-instance-id=%q]')?.dataset.state === 'disabled'`, first), short)
	p.waitJS("the enabled count", `document.querySelector('[data-kpi="aliveInstances"] .sub').textContent.includes('1 enabled')`, short)
	p.shot("overview")
}

func TestSubmitValidationErrorsNextToFields(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	p := newPage(t, d)
	p.open("#/submit")
	p.login("admin", "admin123")
	p.waitJS("the submit form", `!!document.querySelector('#workflow')`, short)

	// A UI-format workflow is caught as it is typed.
	p.do(chromedp.SetValue(chromedp.CSS("#workflow"), `{"nodes": [], "links": []}`))
	eval[any](p, `document.querySelector('#workflow').dispatchEvent(new Event('input'))`)
	p.waitJS("the UI-format message", `document.querySelector('#workflow-error').textContent.includes('Save (API Format)')`, short)
	p.click("#submit-task")
	p.waitJS("the workflow marked invalid", `document.querySelector('#workflow').getAttribute('aria-invalid') === 'true'`, short)

	// Dropping a .json file on the box loads it.
	eval[any](p, `(() => {
	  const dt = new DataTransfer();
	  dt.items.add(new File([JSON.stringify({"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["1", 0]}}})], 'dropped.json', { type: 'application/json' }));
	  const box = document.querySelector('#workflow').closest('.dropzone');
	  box.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
	  box.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
	})()`)
	p.waitJS("the dropped workflow", `document.querySelector('#workflow-summary').textContent.includes('2 nodes') && document.querySelector('#workflow-error').textContent === ''`, short)

	// A param naming no node: the API's 400 names "params.99.seed".
	p.click("#load-example")
	p.waitJS("the parsed workflow", `document.querySelector('#workflow-error').textContent === ''`, short)
	p.click("#add-param")
	p.do(
		chromedp.SendKeys(chromedp.CSS("#param-rows .param-row:last-child .pkey"), "99.seed"),
		chromedp.SendKeys(chromedp.CSS("#param-rows .param-row:last-child .pval"), "1"),
	)
	p.click("#submit-task")
	p.waitJS("the param error", `document.querySelector('#param-rows .param-row:last-child .field-error').textContent.length > 0 && document.querySelector('#param-rows .param-row:last-child .pkey').getAttribute('aria-invalid') === 'true'`, short)
	msg := p.text("#param-rows .param-row:last-child .field-error")
	p.shot("param-error")
	if strings.HasPrefix(msg, "params.") {
		t.Errorf("param error %q still starts with the field name", msg)
	}

	// The priority must be a whole number.
	p.click("#param-rows .param-row:last-child [aria-label='Remove this param']")
	p.do(chromedp.SetValue(chromedp.CSS("#priority"), "1.5"))
	p.click("#submit-task")
	p.waitJS("the priority error", `document.querySelector('#priority-error').textContent.includes('whole number')`, short)
	p.shot("priority-error")

	var list struct {
		Total int `json:"total"`
	}
	d.mustCall("GET", "/api/tasks", nil, &list)
	if list.Total != 0 {
		t.Errorf("%d tasks were created by invalid submissions", list.Total)
	}
}

func TestFailedTaskShowsNodeErrors(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	wf := t2i(4)
	task := d.submit(wf, map[string]any{"Load Checkpoint.ckpt_name": "no-such-model.safetensors"}, 0)

	p := newPage(t, d)
	p.open("#/tasks/" + task.ID)
	p.login("admin", "admin123")
	p.waitJS("the failed task", `document.querySelector('.page-head .badge')?.dataset.status === 'failed'`, long)
	p.waitJS("the node error", `!!document.querySelector('#task-error .node-error[data-node-id="4"]')`, short)
	got := p.text("#task-error")
	for _, want := range []string{"CheckpointLoaderSimple #4", "ckpt_name"} {
		if !strings.Contains(got, want) {
			t.Errorf("error panel lacks %q:\n%s", want, got)
		}
	}
	p.shot("node-errors")

	// Fix it from the task: "Use as template" fills the submit form.
	p.click("#task-template")
	p.waitJS("the template", `location.hash === '#/submit' && document.querySelector('#param-rows .param-row .pkey')?.value === 'Load Checkpoint.ckpt_name'`, short)
	if got := eval[string](p, `document.querySelector('#param-rows .param-row .pval').value`); got != "no-such-model.safetensors" {
		t.Errorf("template value = %q", got)
	}
	p.do(chromedp.SetValue(chromedp.CSS("#param-rows .param-row .pval"), "dreamshaper_8.safetensors"))
	p.click("#submit-task")
	p.waitJS("the new task page", fmt.Sprintf(`/^#\/tasks\/[0-9a-f-]{36}$/.test(location.hash) && !location.hash.endsWith(%q)`, task.ID), short)
	p.waitJS("the completed retry", `document.querySelector('.page-head .badge')?.dataset.status === 'completed'`, long)
}

func TestConfigShowsValidationNextToField(t *testing.T) {
	d := startDemo(t, 2, comfysim.Options{})
	p := newPage(t, d)
	p.open("#/config")
	p.login("admin", "admin123")
	ports := `input[data-field="servers[0].ports"]`
	p.waitJS("the servers", fmt.Sprintf(`!!document.querySelector(%q)?.value`, ports), short)

	p.do(chromedp.SetValue(chromedp.CSS(ports), "70000"))
	p.click("#config-save")
	p.waitJS("the ports error", fmt.Sprintf(`document.querySelector(%q).getAttribute('aria-invalid') === 'true' && document.querySelector(%q).parentElement.querySelector('.field-error').textContent.length > 0`, ports, ports), short)
	p.shot("ports-error")
	msg := eval[string](p, fmt.Sprintf(`document.querySelector(%q).parentElement.querySelector('.field-error').textContent`, ports))
	if !strings.Contains(msg, "70000") {
		t.Errorf("ports error = %q, want it to name 70000", msg)
	}

	// A valid change is applied.
	p.click("#config-discard")
	p.waitJS("the reloaded ports", fmt.Sprintf(`document.querySelector(%q)?.value !== '70000' && document.querySelector(%q).getAttribute('aria-invalid') !== 'true'`, ports, ports), short)
	p.do(chromedp.SetValue(chromedp.CSS(`#cfg-healthCheck-interval`), "5000"))
	p.do(chromedp.SetValue(chromedp.CSS(`#cfg-scheduler-prefetch`), "0")) // 0 is a value (off), not the default
	p.click("#config-save")
	p.waitJS("the override list", `document.querySelector('#runtime-overrides').textContent.includes('healthCheck.interval')`, short)
	var cfg struct {
		HealthCheck struct {
			Interval int `json:"interval"`
		} `json:"healthCheck"`
		Scheduler struct {
			Prefetch *int `json:"prefetch"`
		} `json:"scheduler"`
	}
	d.mustCall("GET", "/api/config", nil, &cfg)
	if cfg.HealthCheck.Interval != 5000 {
		t.Errorf("interval via REST = %d, want 5000", cfg.HealthCheck.Interval)
	}
	if cfg.Scheduler.Prefetch == nil || *cfg.Scheduler.Prefetch != 0 {
		t.Errorf("prefetch via REST = %v, want 0", cfg.Scheduler.Prefetch)
	}
	p.shot("saved")
}

func TestFilesUploadCopyDelete(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	dir := t.TempDir()
	file := filepath.Join(dir, "input-cat.png")
	writePNG(t, file)

	p := newPage(t, d)
	p.open("#/files")
	p.login("admin", "admin123")
	p.waitJS("the files page", `!!document.querySelector('#files')`, short)
	p.do(chromedp.SetUploadFiles(chromedp.CSS("#file-picker"), []string{file}, chromedp.NodeReady))
	p.waitJS("the uploaded row", `[...document.querySelectorAll('#files .file-link')].some(a => a.textContent === 'input-cat.png')`, long)
	p.waitJS("the thumbnail", `[...document.querySelectorAll('#files img.thumb')].some(i => i.complete && i.naturalWidth > 0)`, short)
	p.shot("uploaded")

	var list struct {
		Items []struct {
			FileID string `json:"fileId"`
			URL    string `json:"url"`
		} `json:"items"`
	}
	d.mustCall("GET", "/api/files", nil, &list)
	if len(list.Items) != 1 {
		t.Fatalf("files via REST: %d, want 1", len(list.Items))
	}
	f := list.Items[0]

	// Copy URL: record what reaches the clipboard APIs.
	eval[any](p, `(() => {
	  window.__copied = [];
	  if (navigator.clipboard) { const w = navigator.clipboard.writeText.bind(navigator.clipboard); navigator.clipboard.writeText = (s) => { window.__copied.push(s); return w(s).catch(() => {}); }; }
	  const ex = document.execCommand.bind(document);
	  document.execCommand = (c, ...a) => { if (c === 'copy') window.__copied.push(document.activeElement.value); return ex(c, ...a); };
	})()`)
	row := fmt.Sprintf(`#files tr[data-file-id=%q]`, f.FileID)
	p.click(row + ` [data-action="copy-url"]`)
	p.waitJS("the copied URL", `window.__copied.length > 0`, short)
	if got := eval[[]string](p, `window.__copied`); got[0] != f.URL {
		t.Errorf("copied %q, want %q", got[0], f.URL)
	}

	p.click(row + ` [data-action="delete"]`)
	p.waitJS("the delete dialog", `document.querySelector('dialog[open]')?.textContent.includes('input-cat.png')`, short)
	p.confirm()
	p.waitJS("the row gone", fmt.Sprintf(`!document.querySelector(%q)`, row), short)
	p.waitJS("the empty list", `document.querySelector('#files tbody').textContent.includes('No files yet')`, short)
	p.shot("deleted")
	d.mustCall("GET", "/api/files", nil, &list)
	if len(list.Items) != 0 {
		t.Errorf("files via REST after delete: %d, want 0", len(list.Items))
	}
}

func TestSubmitWithUploadedInputFile(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	dir := t.TempDir()
	file := filepath.Join(dir, "photo.png")
	writePNG(t, file)

	p := newPage(t, d)
	p.open("#/submit")
	p.login("admin", "admin123")
	p.waitJS("the submit form", `!!document.querySelector('#workflow')`, short)
	wf := `{"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "Input"}},
	        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "echo", "images": ["1", 0]}}}`
	p.do(chromedp.SetValue(chromedp.CSS("#workflow"), wf))
	eval[any](p, `document.querySelector('#workflow').dispatchEvent(new Event('input'))`)
	p.waitJS("the nodes table", `!!document.querySelector('#nodes-panel tr[data-node-id="1"] .inp')`, short)
	p.click("#add-param")
	p.do(chromedp.SendKeys(chromedp.CSS("#param-rows .param-row:last-child .pkey"), "Input.image"))
	p.do(chromedp.SetUploadFiles(chromedp.CSS(`#param-rows .param-row:last-child input[type="file"]`), []string{file}, chromedp.NodeReady))
	p.waitJS("the uploaded chip", `document.querySelector('#param-rows .param-row:last-child .file-chip')?.textContent.includes('photo.png') && !document.querySelector('#param-rows .param-row:last-child .file-chip .small')`, long)
	p.shot("attached")
	p.click("#submit-task")
	p.waitJS("the task page", `/^#\/tasks\/[0-9a-f-]{36}$/.test(location.hash)`, short)
	p.waitJS("the completed status", `document.querySelector('.page-head .badge')?.dataset.status === 'completed'`, long)
	p.waitJS("the file param", `document.querySelector('#task-params a')?.textContent === 'photo.png'`, short)
	p.waitJS("the output image", `[...document.querySelectorAll('#task-outputs img')].some(i => i.complete && i.naturalWidth > 0)`, long)
	p.shot("completed")
}

func TestPreviewsSurviveAWrongPublicBaseURL(t *testing.T) {
	// publicBaseUrl names a port nothing listens on (as the demo's
	// default http://localhost:3000 does under --listen elsewhere): the
	// previews retry the /files URL on the dashboard's own origin.
	d := startDemoWith(t, 1, comfysim.Options{}, func(c *config.Config) {
		c.Server.PublicBaseURL = "http://127.0.0.1:9"
	})
	task := d.submit(t2i(2), nil, 0)
	p := newPage(t, d)
	p.open("#/tasks/" + task.ID)
	p.login("admin", "admin123")
	p.waitJS("the output image", `[...document.querySelectorAll('#task-outputs img')].some(i => i.complete && i.naturalWidth > 0 && i.src.startsWith(location.origin + '/files/'))`, long)
	if got := eval[string](p, `document.querySelector('#task-outputs figcaption a').href`); !strings.HasPrefix(got, "http://127.0.0.1:9/files/") {
		t.Errorf("the link shows %q, want the URL as the API gave it", got)
	}
}

func TestExpiredOrRevokedSessionReturnsToLogin(t *testing.T) {
	d := startDemo(t, 1, comfysim.Options{})
	p := newPage(t, d)
	p.open("#/tasks")
	p.login("admin", "admin123")
	p.waitJS("the tasks page", `!!document.querySelector('#tasks')`, short)

	// A token the API no longer accepts: the first 401 shows the login.
	eval[any](p, `(() => { const s = JSON.parse(localStorage.getItem('comfyfleet.session')); s.token = 'x.y.z'; localStorage.setItem('comfyfleet.session', JSON.stringify(s)); })()`)
	p.do(chromedp.Reload())
	p.waitJS("the login form", `!!document.querySelector('#login-username') && location.hash.startsWith('#/login')`, short)
	p.waitJS("the notice", `!!document.querySelector('#login-notice')`, short)
	p.shot("revoked")
	if got := eval[bool](p, `localStorage.getItem('comfyfleet.session') === null`); !got {
		t.Error("the rejected session is still stored")
	}
	// Logging in again returns to the page asked for.
	p.login("admin", "admin123")
	p.waitJS("back on tasks", `location.hash === '#/tasks'`, short)

	// A session past its expiry never reaches the app.
	eval[any](p, `(() => { const s = JSON.parse(localStorage.getItem('comfyfleet.session')); s.expiresAt = '2000-01-01T00:00:00.000Z'; localStorage.setItem('comfyfleet.session', JSON.stringify(s)); })()`)
	p.do(chromedp.Reload())
	p.waitJS("the login form", `!!document.querySelector('#login-username')`, short)

	// Logout clears the session.
	p.login("admin", "admin123")
	p.click("#logout")
	p.waitJS("the login form after logout", `!!document.querySelector('#login-username')`, short)
	if got := eval[bool](p, `localStorage.getItem('comfyfleet.session') === null`); !got {
		t.Error("logout left the session stored")
	}
}

func TestUserRoleSeesNoAdminControls(t *testing.T) {
	hash := func(pw string) string {
		b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	d := startDemoWith(t, 1, comfysim.Options{}, func(c *config.Config) {
		c.Auth.Users = []config.User{
			{Username: "admin", Role: "admin", PasswordHash: hash("admin123")},
			{Username: "alice", Role: "user", PasswordHash: hash("alice-pass")},
		}
	})
	d.submit(t2i(2), nil, 0) // the admin's task, which alice must not see

	p := newPage(t, d)
	p.open("#/instances")
	p.login("alice", "alice-pass")
	p.waitJS("alice's instances", `document.querySelectorAll('#instances tbody tr[data-alive="true"]').length === 1`, long)
	if !eval[bool](p, `[...document.querySelectorAll('#instances input.enable-toggle')].every(i => i.disabled)`) {
		t.Error("a user can flip the enable toggle")
	}
	if eval[bool](p, `!!document.querySelector('[data-nav="config"]')`) {
		t.Error("the Config page is in a user's menu")
	}
	if got := p.text("#whoami"); got != "alice" {
		t.Errorf("whoami = %q", got)
	}
	p.shot("instances")
	p.goRoute("#/config")
	p.waitJS("the admins-only page", `document.querySelector('#main').textContent.includes('Admins only')`, short)
	p.goRoute("#/tasks")
	p.waitJS("an empty task list", `document.querySelector('#tasks tbody')?.textContent.includes('No tasks yet')`, short)
	p.shot("tasks")
}

func TestDarkTheme(t *testing.T) {
	d := startDemo(t, 2, comfysim.Options{})
	done := d.submit(t2i(3), nil, 0)
	failed := d.submit(t2i(3), map[string]any{"KSampler.sampler_name": "no-such-sampler"}, 0)
	p := newPage(t, d)
	p.emulateMedia("dark")
	p.open("#/tasks/" + done.ID)
	p.login("admin", "admin123")
	if bg := eval[string](p, `getComputedStyle(document.body).backgroundColor`); bg != "rgb(11, 15, 23)" {
		t.Errorf("dark background = %s", bg)
	}
	p.waitJS("the output image", `[...document.querySelectorAll('#task-outputs img')].some(i => i.complete && i.naturalWidth > 0)`, long)
	p.shot("task")
	p.goRoute("#/tasks/" + failed.ID)
	p.waitJS("the node error", `!!document.querySelector('#task-error .node-error')`, long)
	p.shot("failed")
	p.goRoute("#/")
	p.waitJS("the counts", `document.querySelector('[data-kpi="failedTasks"] .value')?.textContent === '1'`, long)
	p.shot("overview")
}

func TestPhoneLayout(t *testing.T) {
	d := startDemo(t, 2, comfysim.Options{})
	task := d.submit(t2i(2), nil, 0)
	p := newPage(t, d)
	p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	p.open("")
	p.waitJS("the login form", `!!document.querySelector('#login-username')`, short)
	p.shot("login")
	p.login("admin", "admin123")
	p.waitJS("the counts", `document.querySelector('[data-kpi="aliveInstances"] .value')?.textContent === '2'`, long)
	noOverflow := `document.documentElement.scrollWidth <= window.innerWidth + 1`
	if !eval[bool](p, `getComputedStyle(document.querySelector('.side')).display === 'none' && getComputedStyle(document.querySelector('.topbar')).display !== 'none'`) {
		t.Error("the phone layout does not use the top bar")
	}
	p.waitJS("no sideways scrolling on the overview", noOverflow, short)
	p.shot("overview")
	p.goRoute("#/tasks")
	p.waitJS("a task card", `document.querySelectorAll('#tasks tbody tr.task-row').length === 1`, short)
	p.waitJS("no sideways scrolling on tasks", noOverflow, short)
	p.shot("tasks")
	p.goRoute("#/instances")
	p.waitJS("instance cards", `document.querySelectorAll('#instances tbody tr[data-alive="true"]').length === 2`, long)
	p.waitJS("no sideways scrolling on instances", noOverflow, short)
	p.shot("instances")
	p.goRoute("#/submit")
	p.waitJS("the submit form", `!!document.querySelector('#workflow')`, short)
	p.click("#load-example")
	p.waitJS("no sideways scrolling on submit", noOverflow, short)
	p.shot("submit")
	p.goRoute("#/tasks/" + task.ID)
	p.waitJS("the output image", `[...document.querySelectorAll('#task-outputs img')].some(i => i.complete && i.naturalWidth > 0)`, long)
	p.waitJS("no sideways scrolling on the task", noOverflow, short)
	p.shot("task")
	p.goRoute("#/files")
	p.waitJS("the output file", `document.querySelectorAll('#files tbody tr[data-file-id]').length === 1`, short)
	p.waitJS("no sideways scrolling on files", noOverflow, short)
	p.shot("files")
	p.goRoute("#/config")
	p.waitJS("the config", `!!document.querySelector('input[data-field="servers[0].ports"]')?.value`, short)
	p.waitJS("no sideways scrolling on config", noOverflow, short)
	p.shot("config")
}

// writePNG writes a small test image.
func writePNG(t *testing.T, path string) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 160, 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAutoDrainShown: an instance drained automatically shows the badge
// and the reason live, and an admin enables it again with its switch.
func TestAutoDrainShown(t *testing.T) {
	d := startDemoWith(t, 1, comfysim.Options{}, func(c *config.Config) {
		c.HealthCheck.DrainAfterFailures = 1
		c.HealthCheck.DrainCooldown = config.Millis(time.Hour)
	})
	id := d.Sims[0].Addr()
	p := newPage(t, d)
	p.open("#/instances")
	p.login("admin", "admin123")
	row := fmt.Sprintf(`#instances tr[data-instance-id=%q]`, id)
	p.waitJS("the alive row", fmt.Sprintf(`document.querySelector(%q)?.dataset.alive === 'true'`, row), long)

	d.Sims[0].FailNode("KSampler", "CUDA out of memory. Tried to allocate 4.00 GiB")
	d.submit(t2i(3), nil, 0)
	p.waitJS("the drained row", fmt.Sprintf(`document.querySelector(%q)?.dataset.state === 'drained' &&
		document.querySelector(%q).querySelector('[data-field="drainReason"]')?.textContent.includes('CUDA out of memory')`, row, row), long)
	p.shot("drained")

	d.Sims[0].ClearFaults()
	p.click(row + ` input.enable-toggle`)
	p.waitJS("the enabled row", fmt.Sprintf(`document.querySelector(%q)?.dataset.state === 'idle' && !document.querySelector(%q).querySelector('[data-field="drainReason"]')`, row, row), short)
}
