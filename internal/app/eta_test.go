package app_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// etaDelay is how long the simulated KSampler takes: the whole run of t2i.
const etaDelay = 300 * time.Millisecond

// etaView is a task's estimate as the API shows it.
type etaView struct {
	ID              string  `json:"id"`
	Status          string  `json:"status"`
	QueuePosition   *int    `json:"queuePosition"`
	EstimatedStart  *string `json:"estimatedStart"`
	EstimatedFinish *string `json:"estimatedFinish"`
}

func (v etaView) times(t *testing.T) (start, finish time.Time) {
	t.Helper()
	if v.EstimatedStart == nil || v.EstimatedFinish == nil {
		t.Fatalf("task %s: no estimate: %+v", v.ID, v)
	}
	var err error
	if start, err = time.Parse(time.RFC3339, *v.EstimatedStart); err != nil {
		t.Fatalf("estimatedStart: %v", err)
	}
	if finish, err = time.Parse(time.RFC3339, *v.EstimatedFinish); err != nil {
		t.Fatalf("estimatedFinish: %v", err)
	}
	return start, finish
}

// pendingETAs lists the pending tasks' estimates, by id.
func pendingETAs(e *apptest.Env, token string) map[string]etaView {
	e.T.Helper()
	r := e.Do("GET", "/api/tasks?status=pending&limit=100", token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /api/tasks: %d %s", r.Status, r.Raw)
	}
	var page struct {
		Items []etaView `json:"items"`
	}
	r.Into(e.T, &page)
	out := map[string]etaView{}
	for _, v := range page.Items {
		out[v.ID] = v
	}
	return out
}

func getETA(e *apptest.Env, token, id string) etaView {
	e.T.Helper()
	var v etaView
	r := e.Do("GET", "/api/tasks/"+id, token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /api/tasks/%s: %d %s", id, r.Status, r.Raw)
	}
	r.Into(e.T, &v)
	return v
}

// startETA is a gateway on driver in front of one instance whose runs of
// t2i take etaDelay, giving it one prompt at a time.
func startETA(t *testing.T, driver string) (*apptest.Env, string) {
	useStore := storeConfig(t, driver)
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		noPrefetch(c)
		// A probe slowed down by a loaded machine must not take the one
		// instance down: with none up, nothing is estimated.
		c.HealthCheck.Interval, c.HealthCheck.Timeout, c.HealthCheck.FailureThreshold = config.Millis(time.Second), config.Millis(time.Second), 5
		useStore(c)
	}})
	e.Sims[0].SetNodeDelay("KSampler", etaDelay)
	t.Cleanup(e.Sims[0].Release)
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	return e, admin
}

// hold parks a task on the instance (its prompt hangs) so the tasks
// submitted next wait in the queue; cancelling it teaches the estimator
// nothing.
func hold(e *apptest.Env, token, prefix string) string {
	e.T.Helper()
	e.Sims[0].Hang("")
	id := submit(e, token, body(t2i(1, prefix))).ID
	e.Eventually(10*time.Second, "the held prompt to hang", func() bool { return slices.Contains(e.Sims[0].Hanging(), id) })
	return id
}

// TestETA: a pending task has no estimate before a run of its shape was
// seen; after some, its estimated run time is the runs' duration and its
// start grows with its depth in the queue, by one run per task ahead (one
// instance). The tasks differ in their values, not their shape.
func TestETA(t *testing.T) {
	bothStores(t, func(t *testing.T, driver string) {
		e, admin := startETA(t, driver)
		held := hold(e, admin, "eta-held")
		first := []string{submit(e, admin, body(t2i(2, "eta-a"))).ID, submit(e, admin, body(t2i(3, "eta-b"))).ID}
		for i, id := range first {
			v := getETA(e, admin, id)
			if v.QueuePosition == nil || *v.QueuePosition != i+1 {
				t.Fatalf("task %d: queuePosition %v, want %d", i, v.QueuePosition, i+1)
			}
			if v.EstimatedStart != nil || v.EstimatedFinish != nil {
				t.Errorf("task %d: an estimate before any run was seen: %+v", i, v)
			}
		}
		for id, v := range pendingETAs(e, admin) {
			if v.EstimatedStart != nil || v.EstimatedFinish != nil {
				t.Errorf("listed task %s: an estimate before any run was seen", id)
			}
		}
		if r := e.Do("DELETE", "/api/tasks/"+held, admin, nil); r.Status != http.StatusOK {
			t.Fatalf("cancel the held task: %d %s", r.Status, r.Raw)
		}
		first = append(first, submit(e, admin, body(t2i(4, "eta-c"))).ID)
		var longest time.Duration
		for _, id := range first {
			waitStatus(e, admin, id, "completed", 20*time.Second)
			for _, run := range e.SimLog.Runs(id) {
				longest = max(longest, run.End.Sub(run.Start))
			}
		}

		held = hold(e, admin, "eta-held-2")
		queued := []string{submit(e, admin, body(t2i(5, "eta-d"))).ID, submit(e, admin, body(t2i(6, "eta-e"))).ID, submit(e, admin, body(t2i(7, "eta-f"))).ID}
		asked := time.Now()
		list := pendingETAs(e, admin)
		var prevFinish time.Time
		for i, id := range queued {
			start, finish := list[id].times(t)
			// Each run the gateway saw lasted, by the instance's stamps, at
			// least the delay and at most the whole run the simulator logged
			// (from picking the prompt up to writing its history); so does
			// their moving average (give or take the stamps' milliseconds).
			if ran := finish.Sub(start); ran < etaDelay-2*time.Millisecond || ran > longest+2*time.Millisecond {
				t.Errorf("task %d: estimated run %v, want the observed %v..%v", i, ran, etaDelay, longest)
			}
			if i == 0 && (start.Before(asked.Add(-time.Second)) || start.After(asked.Add(etaDelay+time.Second))) {
				t.Errorf("head: estimated start %v, asked at %v: want it within the held run's expected end", start, asked)
			}
			if i > 0 && !start.Equal(prevFinish) {
				t.Errorf("task %d: estimated start %v, want the previous task's finish %v", i, start, prevFinish)
			}
			prevFinish = finish
		}
		// The task's own page has the same run time as the list (give or
		// take the milliseconds the times are cut to), with its position.
		v := getETA(e, admin, queued[2])
		if v.QueuePosition == nil || *v.QueuePosition != 3 {
			t.Errorf("third task: queuePosition %v, want 3", v.QueuePosition)
		}
		start, finish := v.times(t)
		lStart, lFinish := list[queued[2]].times(t)
		if diff := finish.Sub(start) - lFinish.Sub(lStart); diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("third task alone: run %v, listed %v", finish.Sub(start), lFinish.Sub(lStart))
		}
		if r := e.Do("DELETE", "/api/tasks/"+held, admin, nil); r.Status != http.StatusOK {
			t.Fatalf("cancel the held task: %d %s", r.Status, r.Raw)
		}
	})
}
