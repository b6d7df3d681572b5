package app_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// startOrder lists prompt ids in the order their first run started.
func startOrder(l *comfysim.Log, ids []string) []string {
	out := slices.Clone(ids)
	first := func(id string) time.Time {
		if runs := l.Runs(id); len(runs) > 0 {
			return runs[0].Start
		}
		return time.Time{}
	}
	slices.SortStableFunc(out, func(a, b string) int { return first(a).Compare(first(b)) })
	return out
}

// setEnabled turns every instance of e on or off.
func setEnabled(e *apptest.Env, admin string, on bool) {
	e.T.Helper()
	for _, s := range e.Sims {
		if r := e.Do("PUT", "/api/instances/"+s.Addr(), admin, map[string]bool{"enabled": on}); r.Status != 200 {
			e.T.Fatalf("PUT instance enabled=%v: %d %s", on, r.Status, r.Raw)
		}
	}
}

// TestFairShareAcrossUsers: one user's long queue does not hold back
// another user's single task, even on a single instance that runs one task
// at a time.
func TestFairShareAcrossUsers(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	alice := e.Login(apptest.User, apptest.UserPass)
	bob := e.Login(apptest.User2, apptest.User2Pass)
	waitAlive(e, admin)
	setEnabled(e, admin, false)

	var ids []string
	for i := range 30 {
		ids = append(ids, submit(e, alice, map[string]any{"workflow": basic(fmt.Sprintf("fair/a%d", i))}).ID)
	}
	bobs := submit(e, bob, map[string]any{"workflow": basic("fair/b")}).ID
	ids = append(ids, bobs)
	setEnabled(e, admin, true)
	for _, id := range ids {
		waitStatus(e, admin, id, "completed", 20*time.Second)
	}
	order := startOrder(e.SimLog, ids)
	if at := slices.Index(order, bobs); at != 1 {
		t.Errorf("bob's task ran %d-th of %d; want 2nd (right after alice's first)", at+1, len(order))
	}
	// Alice's own tasks keep their order.
	aliceOrder := slices.DeleteFunc(slices.Clone(order), func(id string) bool { return id == bobs })
	if !slices.Equal(aliceOrder, ids[:30]) {
		t.Errorf("alice's tasks ran out of submit order")
	}
}

// TestPriorityAging: a waiting task gains one priority point per aging
// step, so a higher-priority task submitted soon after it goes first and one
// submitted much later does not.
func TestPriorityAging(t *testing.T) {
	t.Parallel()
	const aging = 100 * time.Millisecond // priority 10 = 1 s of waiting
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Scheduler.PriorityAging = config.Millis(aging)
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	setEnabled(e, admin, false)

	low := submit(e, admin, map[string]any{"workflow": basic("aging/low")})
	soon := submit(e, admin, map[string]any{"workflow": basic("aging/soon"), "priority": 10})
	time.Sleep(1500 * time.Millisecond) // longer than 10 aging steps
	late := submit(e, admin, map[string]any{"workflow": basic("aging/late"), "priority": 10})
	if got := getTask(e, admin, late.ID); got.QueuePosition == nil || *got.QueuePosition != 3 {
		t.Errorf("late high-priority task position = %v, want 3 (behind the aged low-priority task)", got.QueuePosition)
	}
	setEnabled(e, admin, true)
	ids := []string{soon.ID, low.ID, late.ID}
	for _, id := range ids {
		waitStatus(e, admin, id, "completed", 10*time.Second)
	}
	if got := startOrder(e.SimLog, ids); !slices.Equal(got, ids) {
		t.Errorf("run order %v, want soon-high, low, late-high %v", got, ids)
	}
}

// TestWarmPlacement: with two checkpoints interleaved in the queue, each
// instance keeps to the model it has loaded instead of reloading per task.
func TestWarmPlacement(t *testing.T) {
	t.Parallel()
	// A probe that times out on a loaded machine would mark an instance
	// down, and one back from down is taken to have no model loaded: the
	// gateway would then count a switch the instance did not make.
	e := apptest.Start(t, apptest.Options{Instances: 2, Sim: comfysim.Options{ModelLoadDelay: 20 * time.Millisecond},
		Configure: func(c *config.Config) {
			c.HealthCheck.Interval = config.Millis(time.Second)
			c.HealthCheck.Timeout = config.Millis(time.Second)
			c.HealthCheck.FailureThreshold = 10
		}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	setEnabled(e, admin, false)

	ckpts := []string{"sd_xl_base_1.0.safetensors", "dreamshaper_8.safetensors"}
	var ids []string
	for i := range 16 {
		wf := t2i(1, fmt.Sprintf("warm/%d", i))
		wf["4"] = node("CheckpointLoaderSimple", map[string]any{"ckpt_name": ckpts[i%2]})
		ids = append(ids, submit(e, admin, map[string]any{"workflow": wf}).ID)
	}
	setEnabled(e, admin, true)
	for _, id := range ids {
		waitStatus(e, admin, id, "completed", 20*time.Second)
	}
	loads := 0
	for _, s := range e.Sims {
		loads += s.ModelLoads()
	}
	// One load per instance, and at most one more each when its model's
	// tasks run out and it helps with the other's.
	if loads > 4 {
		t.Errorf("%d model loads for 16 tasks over 2 models on 2 instances; want at most 4", loads)
	}
	t.Logf("%d model loads", loads)
	// The gateway's count of the runs that load a model matches the instances'.
	r := e.Do("GET", "/metrics", admin, nil)
	var switches int
	for _, line := range strings.Split(string(r.Raw), "\n") {
		if v, ok := strings.CutPrefix(line, "comfyfleet_checkpoint_switches_total "); ok {
			switches, _ = strconv.Atoi(v)
		}
	}
	if r.Status != 200 || switches != loads {
		t.Errorf("GET /metrics: %d, comfyfleet_checkpoint_switches_total %d, want 200 and %d", r.Status, switches, loads)
	}
}
