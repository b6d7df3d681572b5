package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

// limitData is the data of a 413 or 429 that names a limit.
type limitData struct {
	Limit string `json:"limit"`
	Max   int64  `json:"max"`
	Used  int64  `json:"used"`
}

// wantLimit checks an envelope of status and code whose data names limit.
func wantLimit(t *testing.T, r *apptest.Response, status int, code, limit string, max int64) {
	t.Helper()
	wantError(t, r, status, code)
	var d limitData
	if err := json.Unmarshal(r.Body.Data, &d); err != nil || d.Limit != limit || d.Max != max {
		t.Errorf("data = %s, want limit %q with max %d", r.Body.Data, limit, max)
	}
}

// TestQuotas: a user past maxPendingPerUser or maxStoredBytesPerUser gets a
// 429 quota_exceeded naming the limit, on both stores; other users and
// admins are not held back, and room made is used again.
func TestQuotas(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) func(*config.Config){
		"sqlite": func(*testing.T) func(*config.Config) { return func(*config.Config) {} },
		"redis": func(t *testing.T) func(*config.Config) {
			url := redistest.URL(t)
			prefix := redistest.Prefix(t, url)
			return func(c *config.Config) { c.Store.Driver, c.Store.URL, c.Store.Prefix = "redis", url, prefix }
		},
	}
	for name, storeConfig := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			useStore := storeConfig(t)
			e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
				useStore(c)
				c.Limits.MaxPendingPerUser = 2
				c.Limits.MaxStoredBytesPerUser = 1000
			}})
			testQuotas(t, e)
		})
	}
}

func testQuotas(t *testing.T, e *apptest.Env) {
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	setEnabled(e, admin, false) // everything stays pending
	task := map[string]any{"workflow": basic("quota")}

	first := submit(e, alice, task)
	submit(e, alice, task)
	r := e.Do("POST", "/api/tasks", alice, task)
	wantLimit(t, r, http.StatusTooManyRequests, "quota_exceeded", "limits.maxPendingPerUser", 2)
	submit(e, bob, task) // another user's quota is their own
	for range 3 {
		submit(e, admin, task) // admins are exempt
	}
	if r := e.Do("DELETE", "/api/tasks/"+first.ID, alice, nil); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Raw)
	}
	submit(e, alice, task) // back under the quota

	upload(e, alice, "a.bin", bytes.Repeat([]byte("a"), 600))
	r = uploadRaw(e, alice, "file", "b.bin", bytes.Repeat([]byte("b"), 600))
	wantLimit(t, r, http.StatusTooManyRequests, "quota_exceeded", "limits.maxStoredBytesPerUser", 1000)
	last := upload(e, alice, "c.bin", bytes.Repeat([]byte("c"), 400)) // exactly at the quota
	r = uploadRaw(e, alice, "file", "d.bin", []byte("d"))
	wantLimit(t, r, http.StatusTooManyRequests, "quota_exceeded", "limits.maxStoredBytesPerUser", 1000)
	// At the quota, a task (whose outputs would pass it) is refused too.
	cancelAll(e, alice)
	r = e.Do("POST", "/api/tasks", alice, task)
	wantLimit(t, r, http.StatusTooManyRequests, "quota_exceeded", "limits.maxStoredBytesPerUser", 1000)
	upload(e, admin, "big.bin", bytes.Repeat([]byte("x"), 5000)) // admins are exempt

	if r := e.Do("DELETE", "/api/files/"+last, alice, nil); r.Status != http.StatusOK {
		t.Fatalf("delete file: %d %s", r.Status, r.Raw)
	}
	submit(e, alice, task)
	upload(e, alice, "e.bin", bytes.Repeat([]byte("e"), 400))
}

// cancelAll cancels the caller's pending tasks.
func cancelAll(e *apptest.Env, token string) {
	e.T.Helper()
	var page struct {
		Items []taskView `json:"items"`
	}
	e.Do("GET", "/api/tasks?status=pending&limit=100", token, nil).Into(e.T, &page)
	for _, v := range page.Items {
		if r := e.Do("DELETE", "/api/tasks/"+v.ID, token, nil); r.Status != http.StatusOK {
			e.T.Fatalf("cancel %s: %d %s", v.ID, r.Status, r.Raw)
		}
	}
}

// TestTaskSizeLimits: a workflow of more than maxNodes nodes, or a body
// larger than maxTaskBytes, is a 413 naming the limit, for admins too.
func TestTaskSizeLimits(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Limits.MaxNodes = 10
		c.Limits.MaxTaskBytes = 4096
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	alice := e.Login(apptest.User, apptest.UserPass)
	wf := basic("size")
	for i := range 9 {
		wf[fmt.Sprint(100+i)] = node("EmptyImage", map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0})
	}
	for _, token := range []string{alice, admin} {
		r := e.Do("POST", "/api/tasks", token, map[string]any{"workflow": wf})
		wantLimit(t, r, http.StatusRequestEntityTooLarge, "workflow_too_large", "limits.maxNodes", 10)
		r = e.Do("POST", "/api/tasks", token, map[string]any{"workflow": basic("size"), "params": map[string]any{"1.text": strings.Repeat("x", 5000)}})
		wantLimit(t, r, http.StatusRequestEntityTooLarge, "body_too_large", "limits.maxTaskBytes", 4096)
	}
	delete(wf, "100")
	submit(e, alice, map[string]any{"workflow": wf}) // 10 nodes
}

// TestManyTitlesAnsweredFast: a 5 MB body of params naming nodes by their
// titles is answered in well under the time a quadratic resolution took
// (about 16 s of CPU for 5000 titled nodes; the handler now takes under a
// second). The deadline is generous against a loaded machine;
// internal/workflow's benchmark has the figure.
func TestManyTitlesAnsweredFast(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	alice := e.Login(apptest.User, apptest.UserPass)
	const nodes = 5000
	wf := map[string]any{}
	for i := range nodes {
		wf[fmt.Sprint(i)] = titled("CLIPTextEncode", fmt.Sprintf("Prompt %d", i), map[string]any{"text": "", "clip": link("0", 1)})
	}
	params := map[string]any{}
	for i, size := 0, 0; size < 5<<20; i++ {
		key := fmt.Sprintf("Prompt %d.input_%d", i%nodes, i)
		params[key] = "a lighthouse at dusk"
		size += len(key) + 28
	}
	body, err := json.Marshal(map[string]any{"workflow": wf, "params": params})
	if err != nil {
		t.Fatal(err)
	}
	deadline := 10 * time.Second
	if raceEnabled {
		deadline = 60 * time.Second // the race detector slows JSON work about 8 times
	}
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.URL()+"/api/tasks", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /api/tasks with %d bytes of params over %d titled nodes: %v", len(body), nodes, err)
	}
	defer resp.Body.Close()
	// Accepted, or (once the instance's catalogue is known) refused because
	// CLIPTextEncode has no input_<n>: either way, answered in time.
	var env struct {
		Error string
		Data  struct{ Type string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&env)
	if resp.StatusCode != http.StatusOK && (resp.StatusCode != http.StatusBadRequest || env.Data.Type != "invalid_params") {
		t.Fatalf("POST /api/tasks: %d %+v", resp.StatusCode, env)
	}
}
