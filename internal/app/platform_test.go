package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/api"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

type instanceView struct {
	ID             string  `json:"id"`
	ServerID       string  `json:"serverId"`
	ServerName     string  `json:"serverName"`
	IP             string  `json:"ip"`
	Port           int     `json:"port"`
	Enabled        bool    `json:"enabled"`
	Alive          bool    `json:"alive"`
	Busy           bool    `json:"busy"`
	LastHeartbeat  *string `json:"lastHeartbeat"`
	CurrentTaskID  string  `json:"currentTaskId"`
	QueueRemaining int     `json:"queueRemaining"`
	Device         *struct {
		Name      string `json:"name"`
		VRAMTotal int64  `json:"vramTotal"`
	} `json:"device"`
	Labels  map[string]string `json:"labels"`
	Catalog *struct {
		Hash        string   `json:"hash"`
		NodeClasses int      `json:"nodeClasses"`
		Checkpoints []string `json:"checkpoints"`
	} `json:"catalog"`
}

func instances(e *apptest.Env, token string) []instanceView {
	e.T.Helper()
	r := e.Do("GET", "/api/instances", token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /api/instances: %d %s", r.Status, r.Raw)
	}
	var out []instanceView
	r.Into(e.T, &out)
	return out
}

func instanceByID(e *apptest.Env, token, id string) instanceView {
	e.T.Helper()
	r := e.Do("GET", "/api/instances/"+id, token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /api/instances/%s: %d %s", id, r.Status, r.Raw)
	}
	var v instanceView
	r.Into(e.T, &v)
	return v
}

// waitCatalogs waits until every instance is alive with its node
// catalogue read: submissions are then checked against the fleet.
func waitCatalogs(e *apptest.Env, token string) {
	e.T.Helper()
	e.Eventually(10*time.Second, "every instance alive with a catalogue", func() bool {
		list := instances(e, token)
		for _, in := range list {
			if !in.Alive || in.Catalog == nil {
				return false
			}
		}
		return len(list) == len(e.Sims)
	})
}

func allAlive(e *apptest.Env, token string, n int) bool {
	list := instances(e, token)
	alive := 0
	for _, in := range list {
		if in.Alive {
			alive++
		}
	}
	return len(list) == n && alive == n
}

// wantError checks the contract's error envelope.
func wantError(t *testing.T, r *apptest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Body.Code != status || r.Body.Error != code || r.Body.Message == "" {
		t.Errorf("got %d %s, want %d with error %q in the envelope", r.Status, r.Raw, status, code)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})

	r := e.Do("POST", "/api/auth/login", "", map[string]string{"username": apptest.AdminUser, "password": apptest.AdminPass})
	if r.Status != http.StatusOK {
		t.Fatalf("good login: %d %s", r.Status, r.Raw)
	}
	var ok struct {
		Token string `json:"token"`
		User  struct {
			Username string `json:"username"`
			Role     string `json:"role"`
		} `json:"user"`
		ExpiresAt string `json:"expiresAt"`
	}
	r.Into(t, &ok)
	if ok.Token == "" || ok.User.Username != apptest.AdminUser || ok.User.Role != "admin" {
		t.Errorf("login data = %+v", ok)
	}
	if exp, err := time.Parse(time.RFC3339, ok.ExpiresAt); err != nil || exp.Before(time.Now()) {
		t.Errorf("expiresAt = %q (%v)", ok.ExpiresAt, err)
	}

	wrongPass := e.Do("POST", "/api/auth/login", "", map[string]string{"username": apptest.User, "password": "nope"})
	wrongUser := e.Do("POST", "/api/auth/login", "", map[string]string{"username": "mallory", "password": "nope"})
	wantError(t, wrongPass, http.StatusUnauthorized, "invalid_credentials")
	if !bytes.Equal(wrongPass.Raw, wrongUser.Raw) {
		t.Errorf("wrong user and wrong password differ:\n%s\n%s", wrongPass.Raw, wrongUser.Raw)
	}

	// The limit is 5 failures per address and username; wrongPass was the first.
	for range 4 {
		e.Do("POST", "/api/auth/login", "", map[string]string{"username": apptest.User, "password": "nope"})
	}
	limited := e.Do("POST", "/api/auth/login", "", map[string]string{"username": apptest.User, "password": apptest.UserPass})
	wantError(t, limited, http.StatusTooManyRequests, "too_many_attempts")
	// Another username from the same address is not limited.
	if tok := e.Login(apptest.User2, apptest.User2Pass); tok == "" {
		t.Error("other user locked out")
	}
}

// TestEveryRouteNeedsToken walks the route table: every route but the
// public ones refuses a request without a token, and admin routes refuse a user.
func TestEveryRouteNeedsToken(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	user := e.Login(apptest.User, apptest.UserPass)
	routes := e.App().Routes()
	if len(routes) < 10 {
		t.Fatalf("route table has %d routes", len(routes))
	}
	for _, rt := range routes {
		path := strings.NewReplacer("{id}", "x").Replace(rt.Pattern)
		switch rt.Access {
		case api.Public:
			continue
		case api.Admin:
			wantError(t, e.Do(rt.Method, path, user, []byte(`{}`)), http.StatusForbidden, "forbidden")
		}
		wantError(t, e.Do(rt.Method, path, "", nil), http.StatusUnauthorized, "unauthorized")
		wantError(t, e.Do(rt.Method, path, "not-a-jwt", nil), http.StatusUnauthorized, "invalid_token")
	}
	if got := e.DialWSStatus(""); got != http.StatusUnauthorized {
		t.Errorf("/ws without token: status %d, want 401", got)
	}
	// Public routes answer without a token.
	if r := e.Do("GET", "/api/health", "", nil); r.Status != http.StatusOK {
		t.Errorf("health without token: %d %s", r.Status, r.Raw)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2})
	var h struct {
		Status, Redis, Store string
		AliveInstances       int `json:"aliveInstances"`
		TotalInstances       int `json:"totalInstances"`
	}
	e.Eventually(5*time.Second, "both instances alive in /api/health", func() bool {
		e.Do("GET", "/api/health", "", nil).Into(t, &h)
		return h.AliveInstances == 2
	})
	if h.Status != "ok" || h.Redis != "disabled" || h.Store != "sqlite" || h.TotalInstances != 2 {
		t.Errorf("health = %+v", h)
	}
}

func TestInstancesFromConfigAndHealth(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 3})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	e.Eventually(5*time.Second, "3 alive instances", func() bool { return allAlive(e, admin, 3) })
	list := instances(e, admin)
	for i, in := range list {
		want := fmt.Sprintf("127.0.0.1:%d", apptest.Port(e.Sims[i].Addr()))
		if in.ID != want || in.ServerID != "sim" || in.ServerName != "Simulated box" || in.IP != "127.0.0.1" ||
			in.Port != apptest.Port(e.Sims[i].Addr()) || !in.Enabled || in.LastHeartbeat == nil || in.Device == nil {
			t.Errorf("instance %d = %+v, want id %s from config, enabled, with heartbeat and device", i, in, want)
		}
	}
	wantError(t, e.Do("GET", "/api/instances/10.0.0.1:1", admin, nil), http.StatusNotFound, "instance_not_found")
}

// TestInstanceGoesDownAndComesBack: a stopped simulator turns alive:false
// within threshold x interval (plus a probe timeout), an instance_status
// event is published, and it turns alive:true when it returns.
func TestInstanceGoesDownAndComesBack(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	e.Eventually(5*time.Second, "2 alive instances", func() bool { return allAlive(e, admin, 2) })
	ws := e.DialWS(admin)
	sim := e.Sims[1]
	id := fmt.Sprintf("127.0.0.1:%d", apptest.Port(sim.Addr()))

	if err := sim.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	statusOf := func(alive bool) func(apptest.Message) bool {
		return func(m apptest.Message) bool {
			var d struct {
				InstanceID string `json:"instanceId"`
				Alive      bool   `json:"alive"`
			}
			_ = json.Unmarshal(m.Data, &d)
			return m.Type == "instance_status" && d.InstanceID == id && d.Alive == alive
		}
	}
	// The probes (every 250 ms, 2 failures) find it down in about a second;
	// the bound leaves a loaded machine room and stays far below what the
	// default settings would take (2 x 30 s), so it still shows the
	// configured probes did it.
	ws.WaitFor(10*time.Second, "instance_status alive:false", statusOf(false))
	t.Logf("alive:false after %v", time.Since(stopped))
	if in := instanceByID(e, admin, id); in.Alive || in.LastHeartbeat == nil {
		t.Errorf("after stop: %+v", in)
	}
	if err := sim.Restart(); err != nil {
		t.Fatal(err)
	}
	ws.WaitFor(5*time.Second, "instance_status alive:true", statusOf(true))
	if !instanceByID(e, admin, id).Alive {
		t.Error("instance not alive after restart")
	}
}

func TestEnabledSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	user := e.Login(apptest.User, apptest.UserPass)
	id := fmt.Sprintf("127.0.0.1:%d", apptest.Port(e.Sims[0].Addr()))

	wantError(t, e.Do("PUT", "/api/instances/"+id, user, map[string]bool{"enabled": false}), http.StatusForbidden, "forbidden")
	wantError(t, e.Do("PUT", "/api/instances/"+id, admin, map[string]string{"enabled": "no"}), http.StatusBadRequest, "invalid_field")
	wantError(t, e.Do("PUT", "/api/instances/"+id, admin, map[string]any{}), http.StatusBadRequest, "invalid_field")
	wantError(t, e.Do("PUT", "/api/instances/1.2.3.4:5", admin, map[string]bool{"enabled": false}), http.StatusNotFound, "instance_not_found")
	r := e.Do("PUT", "/api/instances/"+id, admin, map[string]bool{"enabled": false})
	if r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Raw)
	}
	e.Restart()
	admin = e.Login(apptest.AdminUser, apptest.AdminPass) // the token would do too; the secret is kept
	if in := instanceByID(e, admin, id); in.Enabled {
		t.Errorf("enabled after restart: %+v", in)
	}
	other := fmt.Sprintf("127.0.0.1:%d", apptest.Port(e.Sims[1].Addr()))
	if in := instanceByID(e, admin, other); !in.Enabled {
		t.Errorf("other instance disabled: %+v", in)
	}
}

func TestTokenSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	e.Restart()
	if r := e.Do("GET", "/api/instances", admin, nil); r.Status != http.StatusOK {
		t.Errorf("old token after restart: %d %s", r.Status, r.Raw)
	}
}

// TestConfigLive: PUT /api/config adds and removes instances live, the
// change survives a restart, and invalid configs name the field.
func TestConfigLive(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 3, Configure: func(c *config.Config) {
		c.Servers[0].Ports = c.Servers[0].Ports[:1] // start with one of the three sims
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	if n := len(instances(e, admin)); n != 1 {
		t.Fatalf("start with %d instances, want 1", n)
	}
	ports := []int{apptest.Port(e.Sims[1].Addr()), apptest.Port(e.Sims[2].Addr())}
	body := map[string]any{
		"servers":     []map[string]any{{"id": "box-2", "name": "Box 2", "ip": "127.0.0.1", "ports": ports}},
		"healthCheck": map[string]any{"interval": 300},
	}
	r := e.Do("PUT", "/api/config", admin, body)
	if r.Status != http.StatusOK {
		t.Fatalf("PUT /api/config: %d %s", r.Status, r.Raw)
	}
	e.Eventually(5*time.Second, "the two new instances alive", func() bool { return allAlive(e, admin, 2) })
	for _, in := range instances(e, admin) {
		if in.ServerID != "box-2" {
			t.Errorf("instance %s from server %q, want box-2", in.ID, in.ServerID)
		}
	}
	var got struct {
		HealthCheck struct {
			Interval int `json:"interval"`
		} `json:"healthCheck"`
		Auth struct {
			Secret string `json:"secret"`
			Users  []struct {
				PasswordHash string `json:"passwordHash"`
			} `json:"users"`
		} `json:"auth"`
	}
	e.Do("GET", "/api/config", admin, nil).Into(t, &got)
	if got.HealthCheck.Interval != 300 {
		t.Errorf("healthCheck.interval = %d, want 300", got.HealthCheck.Interval)
	}
	for _, u := range got.Auth.Users {
		if strings.HasPrefix(u.PasswordHash, "$2") {
			t.Errorf("GET /api/config leaks a password hash")
		}
	}

	e.Restart()
	admin = e.Login(apptest.AdminUser, apptest.AdminPass)
	if list := instances(e, admin); len(list) != 2 || list[0].ServerID != "box-2" {
		t.Errorf("after restart: %+v, want the 2 instances of box-2", list)
	}

	bad := e.Do("PUT", "/api/config", admin, map[string]any{
		"servers": []map[string]any{{"id": "x", "ip": "127.0.0.1", "ports": []int{70000}}},
	})
	wantError(t, bad, http.StatusBadRequest, "invalid_config")
	var field struct {
		Field string `json:"field"`
	}
	bad.Into(t, &field)
	if !strings.HasPrefix(field.Field, "servers[0].ports") {
		t.Errorf("invalid config names field %q, want servers[0].ports...", field.Field)
	}
	wantError(t, e.Do("PUT", "/api/config", admin, map[string]any{"healthCheck": map[string]any{"interval": "soon"}}),
		http.StatusBadRequest, "invalid_config")
	// Every problem is listed, not only the first.
	two := e.Do("PUT", "/api/config", admin, map[string]any{
		"servers": []map[string]any{{"id": "x", "ip": "127.0.0.1", "ports": []int{70000}}, {"id": "x", "ip": "", "ports": []int{1}}},
	})
	var all struct {
		Fields []struct{ Field, Message string } `json:"fields"`
	}
	two.Into(t, &all)
	if len(all.Fields) < 2 {
		t.Errorf("PUT with several problems lists %d: %s", len(all.Fields), two.Raw)
	}
	wantError(t, e.Do("PUT", "/api/config", admin, map[string]any{"nope": 1}), http.StatusBadRequest, "invalid_config")
	if list := instances(e, admin); len(list) != 2 {
		t.Errorf("a refused config changed the instances: %d", len(list))
	}

	// Every scheduler key and the output bounds change live too.
	r = e.Do("PUT", "/api/config", admin, map[string]any{
		"scheduler": map[string]any{"placement": "fifo", "warmWindow": 10000, "priorityAging": 5000, "interruptGrace": 5000, "prefetch": 0},
		"files":     map[string]any{"maxOutputBytes": 1 << 20, "outputTimeout": 60000},
	})
	if r.Status != http.StatusOK {
		t.Fatalf("PUT of scheduler and output settings: %d %s", r.Status, r.Raw)
	}
	var live struct {
		Scheduler struct {
			Placement      string `json:"placement"`
			InterruptGrace int    `json:"interruptGrace"`
			Prefetch       *int   `json:"prefetch"`
		} `json:"scheduler"`
		Files struct {
			OutputTimeout int `json:"outputTimeout"`
		} `json:"files"`
		RuntimeOverrides []string `json:"runtimeOverrides"`
	}
	e.Do("GET", "/api/config", admin, nil).Into(t, &live)
	if live.Scheduler.Placement != "fifo" || live.Scheduler.InterruptGrace != 5000 || live.Files.OutputTimeout != 60000 ||
		live.Scheduler.Prefetch == nil || *live.Scheduler.Prefetch != 0 ||
		!slices.Contains(live.RuntimeOverrides, "scheduler.placement") {
		t.Errorf("after the PUT: %+v", live)
	}
	wantError(t, e.Do("PUT", "/api/config", admin, map[string]any{"store": map[string]any{"leaseTtl": 5000}}),
		http.StatusBadRequest, "invalid_config")
}

// TestErrorEnvelope: malformed JSON, an oversized body, an unknown route and
// a wrong method all answer in the contract's envelope.
func TestErrorEnvelope(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Server.MaxBodyBytes = config.MinBodyBytes
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	wantError(t, e.Do("POST", "/api/tasks", admin, []byte(`{"workflow": `)), http.StatusBadRequest, "malformed_json")
	wantError(t, e.Do("POST", "/api/auth/login", "", []byte(`not json`)), http.StatusBadRequest, "malformed_json")
	wantError(t, e.Do("POST", "/api/tasks", admin, []byte(`{"workflow": {}} {}`)), http.StatusBadRequest, "malformed_json")
	big := []byte(`{"workflow": {"1": {"class_type": "` + strings.Repeat("x", config.MinBodyBytes) + `"}}}`)
	wantError(t, e.Do("POST", "/api/tasks", admin, big), http.StatusRequestEntityTooLarge, "body_too_large")
	wantError(t, e.Do("GET", "/api/nope", admin, nil), http.StatusNotFound, "route_not_found")
	wantError(t, e.Do("POST", "/nope", "", nil), http.StatusNotFound, "route_not_found")
	r := e.Do("PATCH", "/api/instances", admin, nil)
	wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	r2 := e.Do("DELETE", "/api/auth/login", "", nil)
	wantError(t, r2, http.StatusMethodNotAllowed, "method_not_allowed")
}

func TestMonitorOverview(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 2})
	user := e.Login(apptest.User, apptest.UserPass)
	var o map[string]any
	e.Eventually(5*time.Second, "2 alive in the overview", func() bool {
		e.Do("GET", "/api/monitor/overview", user, nil).Into(t, &o)
		return o["aliveInstances"] == float64(2)
	})
	for _, k := range []string{"totalInstances", "aliveInstances", "busyInstances", "enabledInstances",
		"pendingTasks", "runningTasks", "completedTasks", "failedTasks", "cancelledTasks"} {
		if _, ok := o[k]; !ok {
			t.Errorf("overview lacks %q: %v", k, o)
		}
	}
}
