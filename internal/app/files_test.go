package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

type fileView struct {
	FileID      string  `json:"fileId"`
	Filename    string  `json:"filename"`
	URL         string  `json:"url"`
	Size        int64   `json:"size"`
	ContentType string  `json:"contentType"`
	CreatedAt   string  `json:"createdAt"`
	TaskID      *string `json:"taskId"`
}

func TestFilesAPI(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Files.MaxUploadBytes = 4096
	}})
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)

	wantError(t, uploadRaw(e, alice, "file", "bad\x01name.png", pngBytes(t)), http.StatusBadRequest, "invalid_upload")
	r := uploadRaw(e, alice, "file", "../../etc/pass\"wd\\x.png", pngBytes(t))
	if r.Status != http.StatusOK {
		t.Fatalf("upload: %d %s", r.Status, r.Raw)
	}
	var f fileView
	r.Into(t, &f)
	if strings.ContainsAny(f.Filename, "/\\\"\x01") || strings.Contains(f.Filename, "..") || !strings.HasSuffix(f.Filename, ".png") {
		t.Errorf("stored name %q is not sanitised", f.Filename)
	}
	if f.ContentType != "image/png" || f.Size != int64(len(pngBytes(t))) || !strings.HasPrefix(f.URL, e.URL()+"/files/"+f.FileID+"/") {
		t.Errorf("upload answer = %+v", f)
	}
	if _, err := time.Parse(time.RFC3339, f.CreatedAt); err != nil {
		t.Errorf("createdAt %q: %v", f.CreatedAt, err)
	}

	// Served by URL with type, nosniff and Range support; no token needed.
	resp, err := http.Get(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, pngBytes(t)) || resp.Header.Get("Content-Type") != "image/png" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET %s: %d %v", f.URL, resp.StatusCode, resp.Header)
	}
	req, _ := http.NewRequest("GET", f.URL, nil)
	req.Header.Set("Range", "bytes=0-7")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, pngBytes(t)[:8]) {
		t.Errorf("range request: %d %x", resp.StatusCode, part)
	}
	if resp, _ := http.Get(e.URL() + "/files/" + f.FileID + "/other.png"); resp.StatusCode != 404 {
		t.Errorf("wrong name served: %d", resp.StatusCode)
	}

	// Users see only their own files; admins see all.
	var list struct {
		Total int        `json:"total"`
		Items []fileView `json:"items"`
	}
	e.Do("GET", "/api/files", alice, nil).Into(t, &list)
	if list.Total != 1 || list.Items[0].FileID != f.FileID {
		t.Errorf("alice's files = %+v", list)
	}
	e.Do("GET", "/api/files", bob, nil).Into(t, &list)
	if list.Total != 0 {
		t.Errorf("bob sees %d files", list.Total)
	}
	e.Do("GET", "/api/files?limit=1&offset=0", admin, nil).Into(t, &list)
	if list.Total != 1 || len(list.Items) != 1 {
		t.Errorf("admin's list = %+v", list)
	}
	wantError(t, e.Do("DELETE", "/api/files/"+f.FileID, bob, nil), http.StatusNotFound, "file_not_found")
	wantError(t, e.Do("GET", "/api/files?limit=0", alice, nil), http.StatusBadRequest, "invalid_field")

	// Size limit, a missing field, and not multipart at all.
	wantError(t, uploadRaw(e, alice, "file", "big.bin", bytes.Repeat([]byte{1}, 5000)), http.StatusRequestEntityTooLarge, "file_too_large")
	wantError(t, uploadRaw(e, alice, "other", "x.png", pngBytes(t)), http.StatusBadRequest, "invalid_upload")
	wantError(t, e.Do("POST", "/api/files/upload", alice, map[string]string{"a": "b"}), http.StatusBadRequest, "invalid_upload")

	// Delete removes the record and the bytes.
	if r := e.Do("DELETE", "/api/files/"+f.FileID, alice, nil); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	if resp, _ := http.Get(f.URL); resp.StatusCode != 404 {
		t.Errorf("deleted file still served: %d", resp.StatusCode)
	}
	wantError(t, e.Do("GET", "/api/files/"+f.FileID, alice, nil), http.StatusNotFound, "file_not_found")
}

// TestTaskValidation: API-format checks and params errors are 400s naming
// the field, and nothing is queued.
func TestTaskValidation(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	alice := e.Login(apptest.User, apptest.UserPass)
	cases := []struct {
		name  string
		body  any
		field string
	}{
		{"no workflow", map[string]any{}, "workflow"},
		{"ui format", map[string]any{"workflow": map[string]any{"nodes": []any{map[string]any{"id": 1}}, "links": []any{}}}, "workflow"},
		{"node without class", map[string]any{"workflow": map[string]any{"1": map[string]any{"inputs": map[string]any{}}}}, "workflow.1.class_type"},
		{"unknown node in params", map[string]any{"workflow": basic("v"), "params": map[string]any{"9.x": 1}}, "params.9.x"},
		{"ambiguous title", map[string]any{"workflow": map[string]any{
			"1": titled("EmptyImage", "Same", map[string]any{}), "2": titled("SaveImage", "Same", map[string]any{}),
		}, "params": map[string]any{"Same.x": 1}}, "params.Same.x"},
		{"missing file", map[string]any{"workflow": basic("v"), "params": map[string]any{"1.image": map[string]any{"fileId": "nope"}}}, "params.1.image"},
		{"priority not a number", map[string]any{"workflow": basic("v"), "priority": "high"}, "priority"},
		{"bad status filter", nil, "status"},
	}
	for _, c := range cases {
		var r *apptest.Response
		if c.body == nil {
			r = e.Do("GET", "/api/tasks?status=pending,done", alice, nil)
		} else {
			r = e.Do("POST", "/api/tasks", alice, c.body)
		}
		var d struct{ Field string }
		_ = json.Unmarshal(r.Body.Data, &d)
		if r.Status != 400 || d.Field != c.field || r.Body.Message == "" {
			t.Errorf("%s: %d %s, want 400 naming %q", c.name, r.Status, r.Raw, c.field)
		}
	}
	var list struct{ Total int }
	e.Do("GET", "/api/tasks", alice, nil).Into(t, &list)
	if list.Total != 0 {
		t.Errorf("%d tasks were queued by invalid submissions", list.Total)
	}
}

// TestTaskListAndEvents: listing filters and pages; a user's /ws gets only
// their own task events, an admin's all of them; ping answers pong.
func TestTaskListAndEvents(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	wsBob, wsAdmin := e.DialWS(bob), e.DialWS(admin)

	var ids []string
	for i := range 3 {
		ids = append(ids, submit(e, alice, map[string]any{"workflow": basic("list/" + string(rune('a'+i)))}).ID)
	}
	bobs := submit(e, bob, map[string]any{"workflow": basic("list/bob")}).ID
	for _, id := range append(ids, bobs) {
		waitStatus(e, admin, id, "completed", 10*time.Second)
	}
	var page struct {
		Total int        `json:"total"`
		Items []taskView `json:"items"`
	}
	e.Do("GET", "/api/tasks?status=completed,failed&limit=2", alice, nil).Into(t, &page)
	if page.Total != 3 || len(page.Items) != 2 || page.Items[0].ID != ids[2] || page.Items[1].ID != ids[1] {
		t.Errorf("alice's first page = total %d %v, want newest first of 3", page.Total, page.Items)
	}
	if page.Items[0].Workflow != nil || page.Items[0].Params != nil {
		t.Error("list items carry the workflow")
	}
	e.Do("GET", "/api/tasks?limit=2&offset=2", alice, nil).Into(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != ids[0] {
		t.Errorf("alice's second page = %v", page.Items)
	}
	e.Do("GET", "/api/tasks", admin, nil).Into(t, &page)
	if page.Total != 4 {
		t.Errorf("admin sees %d tasks, want 4", page.Total)
	}

	wsAdmin.WaitFor(5*time.Second, "alice's completion on the admin socket", taskEvent("task_completed", ids[0]))
	wsBob.WaitFor(5*time.Second, "bob's own completion", func(m apptest.Message) bool {
		for _, id := range ids {
			if strings.HasPrefix(m.Type, "task_") && strings.Contains(string(m.Data), id) {
				t.Errorf("bob received %s of alice's task", m.Type)
			}
		}
		return taskEvent("task_completed", bobs)(m)
	})
	wsBob.Send(map[string]string{"type": "ping", "requestId": "r-1"})
	pong := wsBob.WaitFor(5*time.Second, "pong", func(m apptest.Message) bool { return m.Type == "pong" })
	if pong.RequestID != "r-1" || pong.Timestamp == 0 {
		t.Errorf("pong = %+v", pong)
	}
}
