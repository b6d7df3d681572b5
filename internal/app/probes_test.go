package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/buildinfo"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/metrics/metricstest"
)

type readyAnswer struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func readyz(t *testing.T, e *apptest.Env) (int, readyAnswer) {
	t.Helper()
	var a readyAnswer
	r := e.Do("GET", "/readyz", "", nil)
	r.Into(t, &a)
	return r.Status, a
}

// TestProbes: /livez and /readyz answer without a token; /readyz turns 503
// while the replica drains and back to 200 after, while /api/health (the
// seed's) stays 200 throughout.
func TestProbes(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	if r := e.Do("GET", "/livez", "", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Raw), `"status":"alive"`) {
		t.Errorf("/livez: %d %s", r.Status, r.Raw)
	}
	code, a := readyz(t, e)
	if code != http.StatusOK || a.Status != "ready" || a.Checks["store"] != "ok" || a.Checks["draining"] != "no" || a.Checks["config"] != "ok" {
		t.Errorf("/readyz: %d %+v", code, a)
	}

	e.App().SetDraining(true)
	code, a = readyz(t, e)
	if code != http.StatusServiceUnavailable || a.Status != "not_ready" || a.Checks["draining"] != "yes" || a.Checks["store"] != "ok" {
		t.Errorf("/readyz while draining: %d %+v", code, a)
	}
	if r := e.Do("GET", "/api/health", "", nil); r.Status != http.StatusOK {
		t.Errorf("/api/health while draining: %d %s", r.Status, r.Raw)
	}
	if r := e.Do("GET", "/livez", "", nil); r.Status != http.StatusOK {
		t.Errorf("/livez while draining: %d %s", r.Status, r.Raw)
	}
	e.App().SetDraining(false)
	if code, a = readyz(t, e); code != http.StatusOK {
		t.Errorf("/readyz after draining: %d %+v", code, a)
	}
}

// TestProbesRedisDown: with the Redis store stopped, /readyz says the store
// is unreachable (503), /livez still answers, and /api/health says the
// store is unreachable instead of reporting 0 alive instances.
func TestProbesRedisDown(t *testing.T) {
	t.Parallel()
	rs := startRedis(t)
	e := apptest.Start(t, apptest.Options{Instances: 2, Configure: func(c *config.Config) {
		c.Store.Driver, c.Store.URL, c.Store.Prefix = "redis", rs.url(), "probes:"
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	if code, a := readyz(t, e); code != http.StatusOK {
		t.Fatalf("/readyz with Redis up: %d %+v", code, a)
	}

	rs.stop()
	code, a := readyz(t, e)
	if code != http.StatusServiceUnavailable || a.Checks["store"] != "unreachable" || a.Checks["draining"] != "no" {
		t.Errorf("/readyz with Redis down: %d %+v", code, a)
	}
	if strings.Contains(string(e.Do("GET", "/readyz", "", nil).Raw), "127.0.0.1") {
		t.Error("/readyz names the store's address")
	}
	if r := e.Do("GET", "/livez", "", nil); r.Status != http.StatusOK {
		t.Errorf("/livez with Redis down: %d %s", r.Status, r.Raw)
	}
	r := e.Do("GET", "/api/health", "", nil)
	var h map[string]any
	r.Into(t, &h)
	if r.Status != http.StatusServiceUnavailable || h["storeStatus"] != "unreachable" || h["redis"] != "disconnected" {
		t.Errorf("/api/health with Redis down: %d %s", r.Status, r.Raw)
	}
	if _, ok := h["aliveInstances"]; ok {
		t.Errorf("/api/health with Redis down reports aliveInstances: %s", r.Raw)
	}

	rs.start()
	e.Eventually(30*time.Second, "/readyz ready again after Redis returns", func() bool {
		code, _ := readyz(t, e)
		return code == http.StatusOK
	})
	e.Eventually(10*time.Second, "health counts the instances again", func() bool {
		r := e.Do("GET", "/api/health", "", nil)
		r.Into(t, &h)
		return r.Status == http.StatusOK && h["storeStatus"] == "reachable" && h["aliveInstances"] == float64(2)
	})
}

// TestVersionOnHealthAndMetrics: the build's version is on /api/health and
// in the comfyfleet_build_info gauge.
func TestVersionOnHealthAndMetrics(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	want := buildinfo.Get()
	var h struct{ Version string }
	e.Do("GET", "/api/health", "", nil).Into(t, &h)
	if h.Version == "" || h.Version != want.Version {
		t.Errorf("/api/health version = %q, want %q", h.Version, want.Version)
	}
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	f := metricstest.Scrape(t, e.URL()+"/metrics", admin)
	m := f.Find("comfyfleet_build_info", "version", want.Version, "goversion", want.GoVersion)
	if m == nil || m.GetGauge().GetValue() != 1 {
		t.Errorf("comfyfleet_build_info{version=%q} = %v, want 1", want.Version, m)
	}
}
