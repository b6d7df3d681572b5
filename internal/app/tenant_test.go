package app_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// loadAndSave loads image and saves it: what a user sends to read a file.
func loadAndSave(image string) map[string]any {
	return map[string]any{
		"1": node("LoadImage", map[string]any{"image": image}),
		"2": node("ImageInvert", map[string]any{"image": link("1", 0)}),
		"3": node("SaveImage", map[string]any{"images": link("2", 0), "filename_prefix": "stolen"}),
	}
}

// wantField checks a 400 envelope that names field in data.field.
func wantField(t *testing.T, r *apptest.Response, code, field string) {
	t.Helper()
	wantError(t, r, http.StatusBadRequest, code)
	var d struct {
		Field string `json:"field"`
	}
	_ = json.Unmarshal(r.Body.Data, &d)
	if d.Field != field {
		t.Errorf("data.field = %q, want %q (%s)", d.Field, field, r.Raw)
	}
}

// TestUserCannotReadOthersFiles: on a shared instance, a user cannot load
// another user's output (by its sequential name and the [output]
// annotation), another user's upload (by the task id shown in the instance
// list), or anything through "..": each is a 400 naming the input. An
// admin's workflow may load what it wants.
func TestUserCannotReadOthersFiles(t *testing.T) {
	t.Parallel()
	ckpts := append(slices.Clone(comfysim.DefaultCheckpoints), "sdxl/sd_xl_base_1.0.safetensors")
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{Checkpoints: ckpts}})
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, bob)

	// Bob's private upload and output on the one instance.
	fileID := upload(e, bob, "secret.png", pngBytes(t))
	wf := loadAndSave("placeholder.png")
	wf["3"] = node("SaveImage", map[string]any{"images": link("2", 0), "filename_prefix": "ComfyUI"})
	own := submit(e, bob, map[string]any{"workflow": wf, "params": map[string]any{"1.image": map[string]string{"fileId": fileID}}})
	waitStatus(e, bob, own.ID, "completed", 10*time.Second)

	attempts := []struct{ name, image string }{
		{"another user's output", "ComfyUI_00001_.png [output]"},
		{"output, no space", "ComfyUI_00001_.png[output]"},
		{"another user's upload", "comfyfleet/" + own.ID + "/secret.png"},
		{"climbing out of input", "../output/ComfyUI_00001_.png"},
	}
	for _, a := range attempts {
		r := e.Do("POST", "/api/tasks", alice, map[string]any{"workflow": loadAndSave(a.image)})
		wantField(t, r, "invalid_file_reference", "workflow.1.inputs.image")
		// The same value sent through params is named by its key.
		r = e.Do("POST", "/api/tasks", alice, map[string]any{
			"workflow": loadAndSave("placeholder.png"), "params": map[string]any{"1.image": a.image},
		})
		wantField(t, r, "invalid_file_reference", "params.1.image")
	}

	// A plain name at the root of the input folder stays allowed (ComfyUI
	// fails it here: the simulator has no such file), and so does a model
	// in a subfolder.
	plain := submit(e, alice, map[string]any{"workflow": loadAndSave("example.png")})
	waitStatus(e, alice, plain.ID, "failed", 10*time.Second)
	sub := t2i(1, "mine")
	sub["4"] = node("CheckpointLoaderSimple", map[string]any{"ckpt_name": "sdxl/sd_xl_base_1.0.safetensors"})
	if r := e.Do("POST", "/api/tasks", alice, map[string]any{"workflow": sub}); r.Status != http.StatusOK {
		t.Errorf("a model in a subfolder: %d %s", r.Status, r.Raw)
	}

	// Admins are trusted with the instance's folders.
	r := e.Do("POST", "/api/tasks", admin, map[string]any{"workflow": loadAndSave("ComfyUI_00001_.png [output]")})
	if r.Status != http.StatusOK {
		t.Errorf("admin's annotated LoadImage: %d %s", r.Status, r.Raw)
	}
}

// instanceStatus is the data of an instance_status message.
type instanceStatus struct {
	InstanceID    string `json:"instanceId"`
	Busy          bool   `json:"busy"`
	CurrentTaskID string `json:"currentTaskId"`
}

// busyStatus waits for an instance_status of a busy instance and returns it.
func busyStatus(t *testing.T, ws *apptest.WS) instanceStatus {
	t.Helper()
	var st instanceStatus
	ws.WaitFor(10*time.Second, "instance_status busy", func(m apptest.Message) bool {
		st = instanceStatus{}
		return m.Type == "instance_status" && json.Unmarshal(m.Data, &st) == nil && st.Busy
	})
	return st
}

// busyGlobal waits for a global_status that shows a busy instance and
// returns that instance.
func busyGlobal(t *testing.T, ws *apptest.WS) instanceView {
	t.Helper()
	var busy instanceView
	ws.WaitFor(10*time.Second, "global_status with a busy instance", func(m apptest.Message) bool {
		var d struct {
			Instances []instanceView `json:"instances"`
		}
		if m.Type != "global_status" || json.Unmarshal(m.Data, &d) != nil {
			return false
		}
		for _, in := range d.Instances {
			if in.Busy {
				busy = in
				return true
			}
		}
		return false
	})
	return busy
}

// TestOthersTaskIDsHidden: a user sees which instances are busy but not the
// ids of other users' tasks running there (they named the task's folder on
// the instance, and are nobody else's business), in GET /api/instances and
// in instance_status and global_status on /ws; the task's owner and admins
// see the id.
func TestOthersTaskIDsHidden(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{StepDelay: 20 * time.Millisecond}})
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	aliceWS, bobWS, adminWS := e.DialWS(alice), e.DialWS(bob), e.DialWS(admin)

	v := submit(e, bob, map[string]any{"workflow": t2i(1000, "long")})
	t.Cleanup(func() { e.Do("DELETE", "/api/tasks/"+v.ID, bob, nil) })
	waitStatus(e, bob, v.ID, "running", 10*time.Second)
	id := instances(e, admin)[0].ID

	for _, c := range []struct {
		who, token, want string
	}{{"alice", alice, ""}, {"bob", bob, v.ID}, {"admin", admin, v.ID}} {
		if got := instances(e, c.token)[0]; !got.Busy || got.CurrentTaskID != c.want {
			t.Errorf("GET /api/instances as %s: busy %v, currentTaskId %q, want busy and %q", c.who, got.Busy, got.CurrentTaskID, c.want)
		}
		if got := instanceByID(e, c.token, id); got.CurrentTaskID != c.want {
			t.Errorf("GET /api/instances/%s as %s: currentTaskId %q, want %q", id, c.who, got.CurrentTaskID, c.want)
		}
	}
	for _, c := range []struct {
		who  string
		ws   *apptest.WS
		want string
	}{{"alice", aliceWS, ""}, {"bob", bobWS, v.ID}, {"admin", adminWS, v.ID}} {
		if got := busyStatus(t, c.ws); got.CurrentTaskID != c.want {
			t.Errorf("instance_status to %s: currentTaskId %q, want %q", c.who, got.CurrentTaskID, c.want)
		}
		if got := busyGlobal(t, c.ws); got.CurrentTaskID != c.want {
			t.Errorf("global_status to %s: currentTaskId %q, want %q", c.who, got.CurrentTaskID, c.want)
		}
	}
}
