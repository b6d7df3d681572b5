package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// TestWSResume: a client that reconnects with ?since= gets every event it
// missed while away, once each and in order, then live ones; one that asks
// for a position the log does not hold gets resync.
func TestWSResume(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{StepDelay: time.Millisecond}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)

	ws := e.DialWS(admin)
	first := submit(e, admin, map[string]any{"workflow": t2i(3, "resume/first")})
	seen := ws.WaitFor(20*time.Second, "task_completed of the first task", taskEvent("task_completed", first.ID))
	if seen.Seq == 0 {
		t.Fatalf("task_completed carries no seq: %+v", seen)
	}
	ws.Close()

	// Away: three tasks run and complete.
	away := make([]string, 3)
	for i := range away {
		away[i] = submit(e, admin, map[string]any{"workflow": t2i(3, fmt.Sprintf("resume/away%d", i))}).ID
	}
	for _, id := range away {
		e.Eventually(20*time.Second, "task "+id+" completed", func() bool { return getTask(e, admin, id).Status == "completed" })
	}

	back := e.DialWSSince(admin, seen.Seq)
	completed := map[string]int{}
	last := seen.Seq
	back.WaitFor(20*time.Second, "the completions of the tasks run while away", func(m apptest.Message) bool {
		if m.Seq != 0 {
			if m.Seq <= last {
				t.Errorf("%s numbered %d after %d: not after since, or out of order", m.Type, m.Seq, last)
			}
			last = m.Seq
		}
		for _, id := range away {
			if taskEvent("task_completed", id)(m) {
				completed[id]++
			}
		}
		return len(completed) == len(away)
	})
	// Live again: the next task's completion follows.
	next := submit(e, admin, map[string]any{"workflow": t2i(3, "resume/next")})
	back.WaitFor(20*time.Second, "the next task's completion, live", func(m apptest.Message) bool {
		for _, id := range away {
			if taskEvent("task_completed", id)(m) {
				completed[id]++
			}
		}
		return taskEvent("task_completed", next.ID)(m)
	})
	for id, n := range completed {
		if n != 1 {
			t.Errorf("task_completed of %s received %d times, want once", id, n)
		}
	}

	ahead := e.DialWSSince(admin, 1<<40)
	ahead.WaitFor(10*time.Second, "resync for a position ahead of the log", func(m apptest.Message) bool { return m.Type == "resync" })

	if code := e.DialWSStatus(admin + "&since=x"); code != 400 {
		t.Errorf("since=x: upgrade answered %d, want 400", code)
	}
}
