package app_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// progressData is task_progress's data.
type progressData struct {
	TaskID    string `json:"taskId"`
	Progress  int    `json:"progress"`
	NodeID    string `json:"nodeId"`
	Node      string `json:"node"`
	ClassType string `json:"classType"`
	Title     string `json:"title"`
	Value     int    `json:"value"`
	Max       int    `json:"max"`
}

// TestProgressSaysWhereItIs: task_progress names the node running, its
// class and title, and the sampler's step; the percentage weighs the
// sampler's steps, and it never goes down, not even when the run fails
// after the sampler: the failed task keeps the progress clients saw.
func TestProgressSaysWhereItIs(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{StepDelay: time.Millisecond}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	ws := e.DialWS(admin)
	e.Sims[0].FailNode("VAEDecode", "decode failed on purpose")

	wf := t2i(20, "progress/run")
	wf["3"].(map[string]any)["_meta"] = map[string]any{"title": "Main sampler"}
	v := submit(e, admin, map[string]any{"workflow": wf})

	top, atDecode := 0, 0
	steps := map[int]bool{}
	failed := ws.WaitFor(20*time.Second, "task_status failed", func(m apptest.Message) bool {
		var d struct {
			progressData
			Status string `json:"status"`
		}
		_ = json.Unmarshal(m.Data, &d)
		if d.TaskID != v.ID || (m.Type != "task_progress" && m.Type != "task_status") {
			return false
		}
		if d.Status != "pending" && d.Progress < top {
			t.Errorf("%s went from %d%% to %d%%: %s", m.Type, top, d.Progress, m.Data)
		}
		top = max(top, d.Progress)
		if m.Type == "task_status" {
			return d.Status == "failed"
		}
		if d.Node != d.NodeID {
			t.Errorf("task_progress node %q, nodeId %q: want the same", d.Node, d.NodeID)
		}
		switch d.NodeID {
		case "3":
			if d.ClassType != "KSampler" || d.Title != "Main sampler" {
				t.Errorf("sampler's task_progress: %s", m.Data)
			}
			if d.Max == 20 {
				steps[d.Value] = true
			}
		case "6":
			if d.ClassType != "CLIPTextEncode" || d.Title != "Positive" || d.Max != 0 {
				t.Errorf("text encoder's task_progress: %s", m.Data)
			}
		case "8":
			atDecode = d.Progress
		}
		return false
	})
	for step := 1; step <= 20; step++ {
		if !steps[step] {
			t.Errorf("no task_progress for step %d of 20; saw %v", step, steps)
		}
	}
	// 3 quick nodes and 20 steps of the 25 units to run (the checkpoint
	// loader is 1 more): decoding starts at 23/25 = 92%.
	if atDecode != 92 {
		t.Errorf("progress when VAEDecode started = %d, want 92", atDecode)
	}
	var st struct{ Progress int }
	_ = json.Unmarshal(failed.Data, &st)
	if st.Progress != top {
		t.Errorf("task_status failed carries progress %d, want %d (what clients saw)", st.Progress, top)
	}
	if got := getTask(e, admin, v.ID); got.Status != "failed" || got.Progress != top {
		t.Errorf("failed task: %s at %d%%, want failed at %d%%", got.Status, got.Progress, top)
	}
}

// TestProgressKeptWhenOutputsFail: a run whose outputs cannot be fetched
// fails with output_failed and keeps the progress clients saw.
func TestProgressKeptWhenOutputsFail(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	ws := e.DialWS(admin)
	e.Sims[0].FailHTTP("/view", 100)

	v := submit(e, admin, map[string]any{"workflow": t2i(5, "progress/nofetch")})
	top := 0
	ws.WaitFor(20*time.Second, "task_failed", func(m apptest.Message) bool {
		if taskEvent("task_progress", v.ID)(m) {
			var d progressData
			_ = json.Unmarshal(m.Data, &d)
			top = max(top, d.Progress)
		}
		return taskEvent("task_failed", v.ID)(m)
	})
	got := getTask(e, admin, v.ID)
	if got.Status != "failed" || got.Error == nil || got.Error.Type != "output_failed" || top < 90 || got.Progress != top {
		t.Errorf("task: %s at %d%%, error %+v; want failed (output_failed) at %d%% (at least 90)", got.Status, got.Progress, got.Error, top)
	}
}
