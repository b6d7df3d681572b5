package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// drainView is what an instance shows of the automatic drain.
type drainView struct {
	ID          string  `json:"id"`
	Enabled     bool    `json:"enabled"`
	RunFailures int     `json:"runFailures"`
	DrainReason string  `json:"drainReason"`
	DrainedAt   *string `json:"drainedAt"`
	AutoDrained bool    `json:"autoDrained"`
}

func drainOf(e *apptest.Env, token, id string) drainView {
	e.T.Helper()
	var v drainView
	r := e.Do("GET", "/api/instances/"+id, token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /api/instances/%s: %d %s", id, r.Status, r.Raw)
	}
	r.Into(e.T, &v)
	return v
}

func putEnabled(e *apptest.Env, token, id string, on bool) {
	e.T.Helper()
	if r := e.Do("PUT", "/api/instances/"+id, token, map[string]bool{"enabled": on}); r.Status != http.StatusOK {
		e.T.Fatalf("PUT /api/instances/%s: %d %s", id, r.Status, r.Raw)
	}
}

// TestAutoDrain: an instance whose runs fail three times in a row with a
// CUDA error is drained, with the reason on the API and /ws; a workflow's
// own error does not count; after the cooldown a passing probe enables it
// again. An operator enables a drained instance at once, and a probe never
// undoes an operator's disable.
func TestAutoDrain(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		useStore := storeConfig(t, driver)
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
			c.HealthCheck.DrainAfterFailures = 3
			c.HealthCheck.DrainCooldown = config.Millis(time.Second)
			useStore(c)
		}})
		admin := e.Login(apptest.AdminUser, apptest.AdminPass)
		waitCatalogs(e, admin)
		a := e.Sims[0].Addr()
		ws := e.DialWS(admin)

		// A workflow's own error: neutral.
		e.Sims[0].FailNodeOnce("ImageInvert", "ValueError: the image has no alpha channel")
		own := basic("drain/own")
		own["3"] = node("ImageInvert", map[string]any{"image": link("1", 0)})
		own["2"] = node("SaveImage", map[string]any{"images": link("3", 0), "filename_prefix": "drain/own"})
		if v := waitStatus(e, admin, submit(e, admin, map[string]any{"workflow": own}).ID, "failed", 10*time.Second); v.Error == nil ||
			v.Error.Type != "execution_error" {
			t.Fatalf("the workflow's own error: %+v", v.Error)
		}
		if v := drainOf(e, admin, a); v.RunFailures != 0 || !v.Enabled {
			t.Errorf("after a workflow error: %+v, want no run failure counted", v)
		}

		e.Sims[0].FailNode("KSampler", "CUDA out of memory. Tried to allocate 2.00 GiB")
		for i := range 3 {
			id := submit(e, admin, map[string]any{"workflow": t2i(2, "drain/oom"), "params": map[string]any{"3.seed": 100 + i}}).ID
			got := waitStatus(e, admin, id, "failed", 10*time.Second)
			if got.InstanceID != a {
				t.Fatalf("run %d went to %s, want A", i, got.InstanceID)
			}
			// The run's end is recorded just after the task's.
			e.Eventually(5*time.Second, fmt.Sprintf("%d run failures counted", i+1), func() bool {
				return drainOf(e, admin, a).RunFailures == i+1
			})
			if v := drainOf(e, admin, a); i < 2 && !v.Enabled {
				t.Errorf("after %d CUDA failures: %+v, want still enabled", i+1, v)
			}
		}
		v := drainOf(e, admin, a)
		if v.Enabled || !v.AutoDrained || v.RunFailures != 3 || v.DrainedAt == nil ||
			!strings.Contains(v.DrainReason, "3 runs failed in a row") || !strings.Contains(v.DrainReason, "CUDA out of memory") {
			t.Errorf("after 3 CUDA failures: %+v, want drained automatically with the reason", v)
		}
		ws.WaitFor(5*time.Second, "instance_status of the drain", func(m apptest.Message) bool {
			var d struct {
				InstanceID  string `json:"instanceId"`
				Enabled     bool   `json:"enabled"`
				AutoDrained bool   `json:"autoDrained"`
				DrainReason string `json:"drainReason"`
			}
			return m.Type == "instance_status" && json.Unmarshal(m.Data, &d) == nil && d.InstanceID == a &&
				!d.Enabled && d.AutoDrained && strings.Contains(d.DrainReason, "CUDA")
		})

		// Fixed; after the cooldown a passing probe enables it again.
		e.Sims[0].ClearFaults()
		e.Eventually(10*time.Second, "A enabled again after the cooldown", func() bool {
			v := drainOf(e, admin, a)
			return v.Enabled && !v.AutoDrained && v.RunFailures == 0 && v.DrainReason == ""
		})
		waitStatus(e, admin, submit(e, admin, map[string]any{"workflow": t2i(2, "drain/back")}).ID, "completed", 10*time.Second)

		// Drained again, with a long cooldown: an operator enables it at once.
		r := e.Do("PUT", "/api/config", admin, map[string]any{"healthCheck": map[string]any{"drainCooldown": 3600000}})
		if r.Status != http.StatusOK {
			t.Fatalf("PUT /api/config: %d %s", r.Status, r.Raw)
		}
		e.Sims[0].FailNode("KSampler", "RuntimeError: CUDA error: an illegal memory access was encountered")
		for i := range 3 {
			waitStatus(e, admin, submit(e, admin, map[string]any{"workflow": t2i(2, "drain/again"), "params": map[string]any{"3.seed": 200 + i}}).ID,
				"failed", 10*time.Second)
			e.Eventually(5*time.Second, "the failure counted", func() bool { return drainOf(e, admin, a).RunFailures == i+1 })
		}
		if v := drainOf(e, admin, a); v.Enabled || !v.AutoDrained {
			t.Fatalf("drained again: %+v", v)
		}
		e.Sims[0].ClearFaults()
		time.Sleep(300 * time.Millisecond) // probes pass, the cooldown holds
		if v := drainOf(e, admin, a); v.Enabled {
			t.Errorf("enabled before the cooldown: %+v", v)
		}
		putEnabled(e, admin, a, true)
		if v := drainOf(e, admin, a); !v.Enabled || v.AutoDrained || v.DrainReason != "" || v.RunFailures != 0 {
			t.Errorf("after the operator enabled it: %+v", v)
		}
		// An operator's disable stays, whatever the probes say.
		putEnabled(e, admin, a, false)
		time.Sleep(300 * time.Millisecond)
		if v := drainOf(e, admin, a); v.Enabled || v.AutoDrained {
			t.Errorf("an operator's disable was undone: %+v", v)
		}
	})
}

// TestAutoDrainCountResetByCompletion: a run that completes (its outputs
// copied) clears the instance's count of failures in a row.
func TestAutoDrainCountResetByCompletion(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		useStore := storeConfig(t, driver)
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
			c.HealthCheck.DrainAfterFailures = 3
			useStore(c)
		}})
		admin := e.Login(apptest.AdminUser, apptest.AdminPass)
		waitCatalogs(e, admin)
		a := e.Sims[0].Addr()
		e.Sims[0].FailNode("KSampler", "CUDA out of memory. Tried to allocate 2.00 GiB")
		for i := range 2 {
			waitStatus(e, admin, submit(e, admin, body(t2i(2, "reset/oom"))).ID, "failed", 10*time.Second)
			e.Eventually(5*time.Second, fmt.Sprintf("%d run failures counted", i+1), func() bool { return drainOf(e, admin, a).RunFailures == i+1 })
		}
		e.Sims[0].ClearFaults()
		waitStatus(e, admin, submit(e, admin, body(t2i(2, "reset/ok"))).ID, "completed", 10*time.Second)
		e.Eventually(5*time.Second, "the count cleared by the completed run", func() bool { return drainOf(e, admin, a).RunFailures == 0 })
		if v := drainOf(e, admin, a); !v.Enabled || v.AutoDrained {
			t.Errorf("after two failures and a completion: %+v, want enabled", v)
		}
	})
}

// TestAutoDrainProbeWorkflow: after its cooldown a drained instance must
// run the configured probe workflow to completion before it is enabled
// again. While the fault stays, the probe fails, the instance stays drained
// with the probe's error as its reason, and the cooldown starts again; once
// the fault is gone the next probe passes and the instance takes work.
func TestAutoDrainProbeWorkflow(t *testing.T) {
	t.Parallel()
	probe := t2i(1, "drain/probe")
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.HealthCheck.DrainAfterFailures = 2
		c.HealthCheck.DrainCooldown = config.Millis(time.Second)
		c.HealthCheck.ProbeWorkflow = probe
		c.HealthCheck.ProbeTimeout = config.Millis(10 * time.Second)
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitCatalogs(e, admin)
	a := e.Sims[0].Addr()

	e.Sims[0].FailNode("KSampler", "RuntimeError: CUDA error: device-side assert triggered")
	for i := range 2 {
		waitStatus(e, admin, submit(e, admin, map[string]any{"workflow": t2i(2, "drain/fault"), "params": map[string]any{"3.seed": 300 + i}}).ID,
			"failed", 10*time.Second)
		e.Eventually(5*time.Second, "the failure counted", func() bool { return drainOf(e, admin, a).RunFailures == i+1 })
	}
	if v := drainOf(e, admin, a); v.Enabled || !v.AutoDrained {
		t.Fatalf("after 2 CUDA failures: %+v, want drained", v)
	}
	// Health probes pass (the server answers), but the probe workflow
	// meets the fault: the instance must stay drained until a failed
	// probe is recorded, and through another cooldown after it.
	var failedAt time.Time
	deadline := time.Now().Add(15 * time.Second)
	for failedAt.IsZero() || time.Since(failedAt) < 1500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("no failed probe recorded within 15 s: %+v", drainOf(e, admin, a))
		}
		v := drainOf(e, admin, a)
		if v.Enabled {
			t.Fatalf("enabled while its probe workflow fails: %+v", v)
		}
		if failedAt.IsZero() && strings.Contains(v.DrainReason, "probe after the cooldown failed") {
			failedAt = time.Now()
			if !strings.Contains(v.DrainReason, "CUDA error") {
				t.Errorf("drain reason %q does not say what the probe met", v.DrainReason)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	e.Sims[0].ClearFaults()
	e.Eventually(10*time.Second, "A enabled again after a passing probe", func() bool {
		v := drainOf(e, admin, a)
		return v.Enabled && !v.AutoDrained && v.DrainReason == ""
	})
	waitStatus(e, admin, submit(e, admin, map[string]any{"workflow": t2i(2, "drain/fixed")}).ID, "completed", 10*time.Second)
}
