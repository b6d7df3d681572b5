package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"image/jpeg"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// wsSave is EmptyImage (batch 2) -> ImageInvert -> SaveImageWebsocket: the
// images exist only as binary frames on the gateway's socket.
func wsSave(color int) map[string]any {
	return map[string]any{
		"1": node("EmptyImage", map[string]any{"width": 48, "height": 32, "batch_size": 2, "color": color}),
		"2": node("ImageInvert", map[string]any{"image": link("1", 0)}),
		"3": node("SaveImageWebsocket", map[string]any{"images": link("2", 0)}),
	}
}

// TestSaveImageWebsocketOutputs: a task whose only output node is
// SaveImageWebsocket completes with its images as result files, byte for
// byte what the instance sent, whichever framing the instance uses.
func TestSaveImageWebsocketOutputs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		sim  comfysim.Options
	}{
		{"previews with metadata (type 4)", comfysim.Options{}},
		{"legacy previews (type 1)", comfysim.Options{NoPreviewMetadata: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := apptest.Start(t, apptest.Options{Instances: 1, Sim: tt.sim})
			user := e.Login(apptest.User, apptest.UserPass)
			waitAlive(e, user)

			v := submit(e, user, map[string]any{"workflow": wsSave(0x3366cc)})
			got := waitStatus(e, user, v.ID, "completed", 15*time.Second)
			sent := e.SimLog.Streamed(v.ID)
			if len(sent) != 2 {
				t.Fatalf("the instance sent %d images, want 2", len(sent))
			}
			outs := got.Result.Outputs["3"]
			if len(outs) != 2 || len(got.Result.Files) != 2 {
				t.Fatalf("result = %+v, want two outputs of node 3", got.Result)
			}
			for i, o := range outs {
				if o.Type != "output" || o.Kind != "images" || o.NodeID != "3" || o.Filename != "3_"+itoa(i)+".png" || got.Result.Files[i] != o.URL {
					t.Errorf("output %d = %+v", i, o)
				}
				body := download(t, o.URL, "image/png")
				if sum := sha256.Sum256(body); sum != sent[i].SHA256 || len(body) != sent[i].Size {
					t.Errorf("output %d: %d bytes that differ from the %d the instance sent", i, len(body), sent[i].Size)
				}
			}
			var files struct{ Total int }
			e.Do("GET", "/api/files?taskId="+v.ID, user, nil).Into(t, &files)
			if files.Total != 2 {
				t.Errorf("the task has %d files, want 2", files.Total)
			}
		})
	}
}

// TestSaveImageWebsocketLostOnReconnect: when the gateway's socket drops
// while SaveImageWebsocket sends its images, some never arrive and ComfyUI
// keeps no copy: the task fails with output_lost instead of completing
// with part of its outputs.
func TestSaveImageWebsocketLostOnReconnect(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, user)
	e.Sims[0].DropWebSocketOn("progress", 2) // between the first image and the second

	v := submit(e, user, map[string]any{"workflow": wsSave(0x123456)})
	got := waitStatus(e, user, v.ID, "failed", 15*time.Second)
	if got.Error == nil || got.Error.Type != "output_lost" || !strings.Contains(got.Error.Message, "SaveImageWebsocket") {
		t.Errorf("error = %+v, want output_lost naming SaveImageWebsocket", got.Error)
	}
	if got.Result != nil {
		t.Errorf("a failed task has a result: %+v", got.Result)
	}
}

// TestLivePreviews: while a sampler runs, its owner and admins get
// task_preview messages on /ws (JPEG, base64, at most about two a second);
// other users do not, and previews are never stored as files.
func TestLivePreviews(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{PreviewMethod: "auto", StepDelay: 20 * time.Millisecond}})
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, alice)
	watchers := map[string]*apptest.WS{"alice": e.DialWS(alice), "admin": e.DialWS(admin), "bob": e.DialWS(bob)}
	for _, ws := range watchers {
		ws.WaitFor(5*time.Second, "global_status", func(m apptest.Message) bool { return m.Type == "global_status" })
	}

	start := time.Now()
	v := submit(e, alice, map[string]any{"workflow": t2i(60, "preview/run")}) // 60 steps of 20 ms
	for _, name := range []string{"alice", "admin"} {
		previews := 0
		var last apptest.Message
		watchers[name].WaitFor(20*time.Second, "task_completed", func(m apptest.Message) bool {
			if taskEvent("task_preview", v.ID)(m) {
				previews++
				last = m
			}
			return taskEvent("task_completed", v.ID)(m)
		})
		elapsed := time.Since(start)
		if previews < 2 || float64(previews) > 2*elapsed.Seconds()+2 {
			t.Errorf("%s got %d previews in %v, want at least 2 and at most two a second", name, previews, elapsed)
		}
		if previews > 0 {
			checkPreview(t, last.Data, v.ID)
		}
	}
	// bob saw none of it (instance_status, for everyone, names the task).
	mine := submit(e, bob, map[string]any{"workflow": basic("preview/bob")})
	watchers["bob"].WaitFor(15*time.Second, "bob's own task_completed", func(m apptest.Message) bool {
		if strings.HasPrefix(m.Type, "task_") && strings.Contains(string(m.Data), v.ID) {
			t.Errorf("bob received %s of alice's task", m.Type)
		}
		return taskEvent("task_completed", mine.ID)(m)
	})
	var files struct{ Total int }
	e.Do("GET", "/api/files?taskId="+v.ID, alice, nil).Into(t, &files)
	if files.Total != 1 {
		t.Errorf("the task has %d files, want its one output (previews are not stored)", files.Total)
	}
}

func checkPreview(t *testing.T, data json.RawMessage, taskID string) {
	t.Helper()
	var d struct {
		TaskID, NodeID, Format string
		Image                  []byte // base64 in JSON
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("task_preview data %.200s: %v", data, err)
	}
	if d.TaskID != taskID || d.NodeID != "3" || d.Format != "jpeg" {
		t.Errorf("task_preview = %s/%s/%s, want %s/3/jpeg", d.TaskID, d.NodeID, d.Format, taskID)
	}
	if _, err := jpeg.Decode(bytes.NewReader(d.Image)); err != nil {
		t.Errorf("task_preview image is not a base64 JPEG: %v", err)
	}
	if !strings.Contains(string(data), base64.StdEncoding.EncodeToString(d.Image)) {
		t.Error("task_preview image is not standard base64")
	}
}

func download(t *testing.T, url, ctype string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctype {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	return body
}

func itoa(i int) string { return string(rune('0' + i)) }
