package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

const (
	sd15 = "v1-5-pruned-emaonly.safetensors"
	sdxl = "sd_xl_base_1.0.safetensors"
)

// mixed is a gateway in front of two kinds of instance: A (server "small",
// gpu=t4) has SD 1.5 only and no ImageInvert node; B (server "big",
// gpu=a100) has SD 1.5 and SDXL, and no ImageBlur node.
type mixed struct {
	*apptest.Env
	a, b  *comfysim.Sim
	ida   string
	idb   string
	admin string
}

// startMixed starts a mixed fleet on the given store ("sqlite" or "redis").
func startMixed(t *testing.T, driver string, sim comfysim.Options) *mixed {
	t.Helper()
	sim.Log = comfysim.NewLog()
	aOpts, bOpts := sim, sim
	aOpts.Checkpoints, aOpts.MissingClasses = []string{sd15}, []string{"ImageInvert"}
	bOpts.Checkpoints, bOpts.MissingClasses = []string{sd15, sdxl}, []string{"ImageBlur"}
	m := &mixed{a: comfysim.New(aOpts), b: comfysim.New(bOpts)}
	for _, s := range []*comfysim.Sim{m.a, m.b} {
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	m.ida, m.idb = m.a.Addr(), m.b.Addr()
	useStore := storeConfig(t, driver)
	m.Env = apptest.Start(t, apptest.Options{Sims: []*comfysim.Sim{m.a, m.b}, Configure: func(c *config.Config) {
		c.Servers = []config.Server{
			{ID: "small", Name: "SD 1.5 box", IP: "127.0.0.1", Ports: config.Ports{apptest.Port(m.ida)}, Labels: config.Labels{"gpu": "t4"}},
			{ID: "big", Name: "SDXL box", IP: "127.0.0.1", Ports: config.Ports{apptest.Port(m.idb)}, Labels: config.Labels{"gpu": "a100"}},
		}
		useStore(c)
	}})
	m.admin = m.Login(apptest.AdminUser, apptest.AdminPass)
	waitCatalogs(m.Env, m.admin)
	return m
}

// bothStores runs fn on SQLite and on Redis (when TEST_REDIS_URL is set).
// storeConfig is the config change that puts a gateway on driver: a
// Redis prefix of the test's own for "redis", nothing for "sqlite".
func storeConfig(t *testing.T, driver string) func(*config.Config) {
	if driver != "redis" {
		return func(*config.Config) {}
	}
	url := redistest.URL(t)
	return redisConfig(url, redistest.Prefix(t, url))
}

func bothStores(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, driver := range []string{"sqlite", "redis"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			fn(t, driver)
		})
	}
}

// refusal is the data of a 400 from a submit the fleet cannot run.
type refusal struct {
	Field      string `json:"field"`
	Type       string `json:"type"`
	Message    string `json:"message"`
	NodeErrors map[string]struct {
		Errors []struct {
			Type      string          `json:"type"`
			Message   string          `json:"message"`
			Details   string          `json:"details"`
			ExtraInfo json.RawMessage `json:"extra_info"`
		} `json:"errors"`
		DependentOutputs []string `json:"dependent_outputs"`
		ClassType        string   `json:"class_type"`
	} `json:"nodeErrors"`
	Catalogs []struct {
		Instances []string `json:"instances"`
	} `json:"catalogs"`
}

// refuse submits body and wants a 400 with code and a refusal of type typ.
func (m *mixed) refuse(t *testing.T, body map[string]any, code, typ string) refusal {
	t.Helper()
	r := m.Do("POST", "/api/tasks", m.admin, body)
	wantError(t, r, http.StatusBadRequest, code)
	var v refusal
	r.Into(t, &v)
	if v.Type != typ {
		t.Errorf("refusal type = %q, want %q: %s", v.Type, typ, r.Raw)
	}
	return v
}

// nodeError returns the first error type of node id, "" if none.
func (v refusal) nodeError(id string) string {
	if ne, ok := v.NodeErrors[id]; ok && len(ne.Errors) > 0 {
		return ne.Errors[0].Type
	}
	return ""
}

func t2iWith(ckpt, prefix string) map[string]any {
	wf := t2i(4, prefix)
	wf["4"] = node("CheckpointLoaderSimple", map[string]any{"ckpt_name": ckpt})
	return wf
}

// TestSubmitRefusesWhatNoInstanceRuns: a typo'd class, a missing model, a
// typo'd params input and requires no instance has are answered 400 at
// once with ComfyUI's node_errors, and no task is created.
func TestSubmitRefusesWhatNoInstanceRuns(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		m := startMixed(t, driver, comfysim.Options{})

		typo := t2iWith(sd15, "typo/class")
		typo["8"] = node("VAEDecod", map[string]any{"samples": link("3", 0), "vae": link("4", 2)})
		v := m.refuse(t, map[string]any{"workflow": typo}, "invalid_workflow", "invalid_prompt")
		if v.nodeError("8") != "missing_node_type" || v.NodeErrors["8"].ClassType != "VAEDecod" ||
			!strings.Contains(v.Message, "Cannot execute because node VAEDecod does not exist.") {
			t.Errorf("typo'd class: %+v", v)
		}

		v = m.refuse(t, map[string]any{"workflow": t2iWith("sd3_medium.safetensors", "typo/model")},
			"invalid_workflow", "prompt_outputs_failed_validation")
		if v.nodeError("4") != "value_not_in_list" || !strings.Contains(v.NodeErrors["4"].Errors[0].Details, "sd3_medium.safetensors") ||
			len(v.NodeErrors["4"].DependentOutputs) != 1 || v.NodeErrors["4"].DependentOutputs[0] != "9" {
			t.Errorf("missing model: %+v", v)
		}

		v = m.refuse(t, map[string]any{"workflow": t2iWith(sd15, "typo/param"), "params": map[string]any{"3.step": 30}},
			"invalid_workflow", "invalid_params")
		if v.Field != "params.3.step" || v.nodeError("3") != "unknown_input" ||
			!strings.Contains(v.NodeErrors["3"].Errors[0].Details, `did you mean "steps"?`) {
			t.Errorf("typo'd params input: %+v", v)
		}
		v = m.refuse(t, map[string]any{"workflow": t2iWith(sd15, "typo/param2"), "params": map[string]any{"6.txt": "a dog"}},
			"invalid_workflow", "invalid_params")
		if v.nodeError("6") != "unknown_input" {
			t.Errorf("typo'd params input 6.txt: %+v", v)
		}

		m.refuse(t, map[string]any{"workflow": t2iWith(sd15, "labels"), "requires": map[string]string{"gpu": "h100"}},
			"no_capable_instance", "no_matching_labels")
		// Among the instances the labels allow, the workflow fails as
		// ComfyUI would fail it there.
		v = m.refuse(t, map[string]any{"workflow": t2iWith(sdxl, "t4"), "requires": map[string]string{"gpu": "t4"}},
			"invalid_workflow", "prompt_outputs_failed_validation")
		if v.nodeError("4") != "value_not_in_list" {
			t.Errorf("SDXL on the t4 box: %+v", v)
		}
		// Each part runs somewhere, but no single instance runs all of it.
		split := t2iWith(sdxl, "split")
		split["10"] = node("ImageBlur", map[string]any{"image": link("8", 0), "blur_radius": 1, "sigma": 1.0})
		split["11"] = node("SaveImage", map[string]any{"images": link("10", 0), "filename_prefix": "split/inv"})
		split["9"] = node("SaveImage", map[string]any{"images": link("10", 0), "filename_prefix": "split"})
		v = m.refuse(t, map[string]any{"workflow": split}, "no_capable_instance", "no_capable_instance")
		if len(v.Catalogs) != 2 {
			t.Errorf("no_capable_instance lists %d catalogues, want 2: %+v", len(v.Catalogs), v)
		}

		var o struct{ TotalTasks int }
		m.Do("GET", "/api/monitor/overview", m.admin, nil).Into(t, &o)
		if o.TotalTasks != 0 {
			t.Errorf("%d tasks exist after refusals only", o.TotalTasks)
		}
	})
}

// TestPlacementByCapability: tasks that need SDXL always run on B and
// never fail on A, however busy B is; requires labels are respected; an
// SD 1.5 task runs on either.
func TestPlacementByCapability(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		m := startMixed(t, driver, comfysim.Options{StepDelay: 5 * time.Millisecond})
		var xl, small, big, anywhere []string
		for i := range 6 {
			xl = append(xl, submit(m.Env, m.admin, map[string]any{"workflow": t2iWith(sdxl, "place/xl")}).ID)
			anywhere = append(anywhere, submit(m.Env, m.admin, map[string]any{"workflow": t2iWith(sd15, "place/any")}).ID)
			if i%2 == 0 {
				small = append(small, submit(m.Env, m.admin, map[string]any{"workflow": t2iWith(sd15, "place/t4"),
					"requires": map[string]string{"gpu": "t4"}}).ID)
				big = append(big, submit(m.Env, m.admin, map[string]any{"workflow": t2iWith(sd15, "place/a100"),
					"requires": map[string]string{"gpu": "a100"}}).ID)
			}
		}
		check := func(ids []string, want string) {
			t.Helper()
			for _, id := range ids {
				m.Eventually(60*time.Second, "task "+id+" done", func() bool {
					v := getTask(m.Env, m.admin, id)
					return v.Status != "pending" && v.Status != "running"
				})
				v := getTask(m.Env, m.admin, id)
				if v.Status != "completed" {
					t.Errorf("task %s is %s: %+v", id, v.Status, v.Error)
				}
				if want != "" && v.InstanceID != want {
					t.Errorf("task %s ran on %s, want %s", id, v.InstanceID, want)
				}
				if v.Attempts != 1 {
					t.Errorf("task %s took %d attempts, want 1", id, v.Attempts)
				}
				for _, run := range m.SimLog.Runs(id) {
					if want != "" && run.Instance != want {
						t.Errorf("task %s reached %s", id, run.Instance)
					}
				}
			}
		}
		check(xl, m.idb)
		check(big, m.idb)
		check(small, m.ida)
		check(anywhere, "")
		ranOnA := 0
		for _, id := range anywhere {
			if getTask(m.Env, m.admin, id).InstanceID == m.ida {
				ranOnA++
			}
		}
		if ranOnA == 0 {
			t.Errorf("no SD 1.5 task ran on A: placement is not using the whole fleet")
		}
		for _, p := range m.a.Prompts() {
			if strings.Contains(string(p.Prompt), sdxl) {
				t.Errorf("A received an SDXL prompt (%s, status %d)", p.PromptID, p.Status)
			}
		}
	})
}

// TestCapableInstanceDown: a task only a stopped instance can run waits for
// it instead of failing elsewhere, and runs there once it is back.
func TestCapableInstanceDown(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		m := startMixed(t, driver, comfysim.Options{})
		if err := m.b.Stop(); err != nil {
			t.Fatal(err)
		}
		m.Eventually(10*time.Second, "B down", func() bool { return !instanceByID(m.Env, m.admin, m.idb).Alive })
		xl := submit(m.Env, m.admin, map[string]any{"workflow": t2iWith(sdxl, "down/xl")}).ID
		anyID := submit(m.Env, m.admin, map[string]any{"workflow": t2iWith(sd15, "down/any")}).ID
		waitStatus(m.Env, m.admin, anyID, "completed", 20*time.Second)
		if v := getTask(m.Env, m.admin, xl); v.Status != "pending" {
			t.Fatalf("the SDXL task is %s while B is down, want pending", v.Status)
		}
		if err := m.b.Restart(); err != nil {
			t.Fatal(err)
		}
		v := waitStatus(m.Env, m.admin, xl, "completed", 30*time.Second)
		if v.InstanceID != m.idb || v.Attempts != 1 {
			t.Errorf("the SDXL task ran on %s in %d attempts, want B in 1", v.InstanceID, v.Attempts)
		}
	})
}

// TestRerouteWhenOneInstanceRefuses: A's catalogue says it has a model it
// no longer has (removed without a refresh): A refuses the prompt at
// validation and the task goes to B instead of failing. An operator's
// refresh then shows the change, and A takes no such task again.
func TestRerouteWhenOneInstanceRefuses(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		m := startMixed(t, driver, comfysim.Options{})
		r := m.Do("PUT", "/api/instances/"+m.idb, m.admin, map[string]bool{"enabled": false})
		if r.Status != http.StatusOK {
			t.Fatalf("disable B: %d %s", r.Status, r.Raw)
		}
		m.a.SetModels([]string{"other.safetensors"}, nil)
		id := submit(m.Env, m.admin, map[string]any{"workflow": t2iWith(sd15, "reroute")}).ID
		m.Eventually(20*time.Second, "A refused the prompt", func() bool {
			for _, p := range m.a.Prompts() {
				if p.PromptID == id && p.Status == http.StatusBadRequest {
					return true
				}
			}
			return false
		})
		m.Eventually(10*time.Second, "the task back in the queue", func() bool {
			return getTask(m.Env, m.admin, id).Status == "pending"
		})
		if r := m.Do("PUT", "/api/instances/"+m.idb, m.admin, map[string]bool{"enabled": true}); r.Status != http.StatusOK {
			t.Fatalf("enable B: %d %s", r.Status, r.Raw)
		}
		v := waitStatus(m.Env, m.admin, id, "completed", 30*time.Second)
		if v.InstanceID != m.idb || v.Attempts != 2 {
			t.Errorf("rerouted task ran on %s in %d attempts, want B in 2", v.InstanceID, v.Attempts)
		}

		r = m.Do("POST", "/api/instances/"+m.ida+"/refresh-catalog", m.admin, nil)
		var iv instanceView
		r.Into(t, &iv)
		if r.Status != http.StatusOK || iv.Catalog == nil || len(iv.Catalog.Checkpoints) != 1 || iv.Catalog.Checkpoints[0] != "other.safetensors" {
			t.Errorf("refresh-catalog: %d %s", r.Status, r.Raw)
		}
		// Now only B offers SD 1.5: A is left out at submit already.
		m.refuse(t, map[string]any{"workflow": t2iWith(sd15, "t4"), "requires": map[string]string{"gpu": "t4"}},
			"invalid_workflow", "prompt_outputs_failed_validation")
	})
}

// TestCatalogueReadAfterRestart: an instance that restarts with another
// model set is read again (its socket reconnects, health sees it back),
// and tasks for the new model go to it.
func TestCatalogueReadAfterRestart(t *testing.T) {
	t.Parallel()
	m := startMixed(t, "sqlite", comfysim.Options{})
	if err := m.a.Stop(); err != nil {
		t.Fatal(err)
	}
	m.a.SetModels([]string{sd15, "flux1-dev.safetensors"}, nil)
	if err := m.a.Restart(); err != nil {
		t.Fatal(err)
	}
	m.Eventually(10*time.Second, "A's new catalogue", func() bool {
		c := instanceByID(m.Env, m.admin, m.ida).Catalog
		return c != nil && len(c.Checkpoints) == 2
	})
	v := waitStatus(m.Env, m.admin, submit(m.Env, m.admin, map[string]any{"workflow": t2iWith("flux1-dev.safetensors", "flux")}).ID,
		"completed", 20*time.Second)
	if v.InstanceID != m.ida {
		t.Errorf("the flux task ran on %s, want A", v.InstanceID)
	}
}
