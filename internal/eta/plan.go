package eta

import (
	"slices"
	"time"
)

// Running is a task that occupies an instance: running there, or placed
// there and waiting in its queue (prefetch), or copying its outputs.
type Running struct {
	Instance string
	Shape    string
	// Started is when it was placed on the instance.
	Started time.Time
}

// Job is a pending task as a plan places it.
type Job struct {
	Shape string
	// Any: every instance can run it; else only Instances.
	Any       bool
	Instances []string
}

// Slot is when a job is expected to start and finish.
type Slot struct {
	Start, Finish time.Time
}

// Plan walks the queue the way the instances would drain it: each job, in
// queue order, goes to the instance able to run it that is free first, and
// keeps it for the job's expected duration. It starts from the instances
// that can take work now (enabled and alive) and the work they already
// have. A Plan is used by one goroutine.
type Plan struct {
	d       *Durations
	typical time.Duration
	// ids are the ready instances in a stable order (ties go to the first);
	// free says when each is free.
	ids  []string
	free map[string]time.Time
}

// NewPlan starts a plan at now on the ready instances, each busy with its
// share of running. An instance's running tasks are one backlog that began
// when the earliest of them was placed (the others waited in its queue
// behind it), so it is free when that backlog's expected durations have
// passed since then, or now if they have. A running task of a shape never
// seen counts as the typical duration. ok is false before any run was
// observed: nothing can be estimated.
func NewPlan(now time.Time, d *Durations, ready []string, running []Running) (*Plan, bool) {
	typical, ok := d.Typical()
	if !ok {
		return nil, false
	}
	p := &Plan{d: d, typical: typical, ids: slices.Clone(ready), free: make(map[string]time.Time, len(ready))}
	begun := map[string]time.Time{}
	work := map[string]time.Duration{}
	for _, r := range running {
		if b, seen := begun[r.Instance]; !seen || r.Started.Before(b) {
			begun[r.Instance] = r.Started
		}
		work[r.Instance] += p.duration(r.Shape, r.Instance)
	}
	for _, id := range p.ids {
		free := now
		if b, busy := begun[id]; busy && b.Add(work[id]).After(now) {
			free = b.Add(work[id])
		}
		p.free[id] = free
	}
	return p, true
}

// duration is the expected duration of shape on instance, the typical
// duration for a shape never seen.
func (p *Plan) duration(shape, instance string) time.Duration {
	if d, ok := p.d.Expected(shape, instance); ok {
		return d
	}
	return p.typical
}

// Place gives j the instance able to run it that is free first and returns
// its slot there. ok is false, and nothing is placed, when no ready
// instance can run it (it waits for one to come back) or its shape was
// never seen; a job of a shape never seen still takes its instance for the
// typical duration, since the tasks behind it wait for it all the same.
func (p *Plan) Place(j Job) (Slot, bool) {
	best := ""
	for _, id := range p.ids {
		if !j.Any && !slices.Contains(j.Instances, id) {
			continue
		}
		if best == "" || p.free[id].Before(p.free[best]) {
			best = id
		}
	}
	if best == "" {
		return Slot{}, false
	}
	start := p.free[best]
	d, known := p.d.Expected(j.Shape, best)
	if !known {
		d = p.typical
	}
	p.free[best] = start.Add(d)
	return Slot{Start: start, Finish: start.Add(d)}, known
}

// Skip accounts for n queued jobs the plan knows nothing of but their
// number (those past the listed head of a long queue): each counts as the
// typical duration, and together they are spread evenly over the ready
// instances.
func (p *Plan) Skip(n int) {
	if n <= 0 || len(p.ids) == 0 {
		return
	}
	each := time.Duration(int64(n) * int64(p.typical) / int64(len(p.ids)))
	for _, id := range p.ids {
		p.free[id] = p.free[id].Add(each)
	}
}
