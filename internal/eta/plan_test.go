package eta

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func sec(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

func TestDurationsAverage(t *testing.T) {
	d := NewDurations()
	if _, ok := d.Expected("x", "a"); ok {
		t.Fatal("expected duration before any run")
	}
	for range 5 {
		d.Observe("x", "a", sec(10))
	}
	if got, _ := d.Expected("x", "a"); got != sec(10) {
		t.Errorf("after 5 runs of 10s: %v, want 10s", got)
	}
	d.Observe("x", "a", sec(20))
	if got, _ := d.Expected("x", "a"); got != sec(12.5) {
		t.Errorf("after one run of 20s: %v, want 12.5s (weight %v)", got, Weight)
	}
	// Another instance: the shape's average until it ran there.
	if got, _ := d.Expected("x", "b"); got != sec(12.5) {
		t.Errorf("on an instance it never ran on: %v, want the shape's 12.5s", got)
	}
	d.Observe("x", "b", sec(4))
	if got, _ := d.Expected("x", "b"); got != sec(4) {
		t.Errorf("after a run on b: %v, want 4s", got)
	}
	if _, ok := d.Expected("y", "a"); ok {
		t.Error("a shape never seen has an expected duration")
	}
}

// TestPlanSpreads: the queue ahead is spread over the instances able to
// run each task, each free when its running work is expected to end.
func TestPlanSpreads(t *testing.T) {
	d := NewDurations()
	d.Observe("x", "a", sec(10))
	d.Observe("x", "b", sec(20))
	d.Observe("y", "b", sec(5))
	// a ran "x" since t0-4s: free at t0+6s. b is idle.
	p, ok := NewPlan(t0, d, []string{"a", "b"}, []Running{{Instance: "a", Shape: "x", Started: t0.Add(-sec(4))}})
	if !ok {
		t.Fatal("no plan with observations")
	}
	steps := []struct {
		job        Job
		start, end float64
		ok         bool
		note       string
	}{
		{Job{Shape: "x", Any: true}, 0, 20, true, "b is idle"},
		{Job{Shape: "x", Any: true}, 6, 16, true, "a frees at 6s"},
		{Job{Shape: "y", Instances: []string{"b"}}, 20, 25, true, "only b runs y"},
		{Job{Shape: "z", Any: true}, 0, 0, false, "z never seen: no estimate, a busy for the typical duration"},
		{Job{Shape: "x", Instances: []string{"c"}}, 0, 0, false, "c is not ready"},
		{Job{Shape: "x", Any: true}, 25, 45, true, "b frees at 25s, before a at 26.6s"},
	}
	for i, s := range steps {
		got, ok := p.Place(s.job)
		if ok != s.ok {
			t.Fatalf("step %d (%s): ok = %v, want %v", i, s.note, ok, s.ok)
		}
		if !ok {
			continue
		}
		want := Slot{Start: t0.Add(sec(s.start)), Finish: t0.Add(sec(s.end))}
		if got != want {
			t.Errorf("step %d (%s): slot %v..%v, want %v..%v", i, s.note,
				got.Start.Sub(t0), got.Finish.Sub(t0), want.Start.Sub(t0), want.Finish.Sub(t0))
		}
	}
}

// TestPlanBacklog: a prefetched task waits behind the one running; a run
// past its expected end leaves the instance free now.
func TestPlanBacklog(t *testing.T) {
	d := NewDurations()
	d.Observe("x", "a", sec(10))
	running := []Running{
		{Instance: "a", Shape: "x", Started: t0.Add(-sec(3))},
		{Instance: "a", Shape: "x", Started: t0.Add(-sec(1))},
		{Instance: "b", Shape: "x", Started: t0.Add(-sec(30))},
	}
	p, _ := NewPlan(t0, d, []string{"a", "b"}, running)
	if got := p.free["a"]; !got.Equal(t0.Add(sec(17))) {
		t.Errorf("a with a run and a prefetched one: free at %v, want 17s", got.Sub(t0))
	}
	if got := p.free["b"]; !got.Equal(t0) {
		t.Errorf("b past its run's expected end: free at %v, want now", got.Sub(t0))
	}
}

// TestPlanSkip: tasks counted by number alone take the typical duration
// each, spread evenly.
func TestPlanSkip(t *testing.T) {
	d := NewDurations()
	d.Observe("x", "a", sec(10))
	p, _ := NewPlan(t0, d, []string{"a", "b"}, nil)
	p.Skip(4)
	got, ok := p.Place(Job{Shape: "x", Any: true})
	if !ok || !got.Start.Equal(t0.Add(sec(20))) {
		t.Errorf("after 4 tasks of 10s on 2 instances: start %v (ok %v), want 20s", got.Start.Sub(t0), ok)
	}
	if _, ok := NewPlan(t0, NewDurations(), []string{"a"}, nil); ok {
		t.Error("a plan with nothing observed")
	}
}
