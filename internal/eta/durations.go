package eta

import (
	"sync"
	"time"
)

// Weight is the weight of the newest observation in a moving average: the
// average follows a change of speed within a few runs, and one slow run
// moves it by a quarter of the difference.
const Weight = 0.25

// maxKeys bounds each table of Durations: past it, an arbitrary entry is
// forgotten to make room (the gateway sees few shapes; a client that makes
// up a new workflow for every task must not grow memory without end).
const maxKeys = 4096

// Durations keeps exponentially weighted moving averages of observed run
// times per shape and instance, per shape (any instance), and over every
// run. It is safe for concurrent use; each call costs a map lookup.
type Durations struct {
	// mu guards the fields below.
	mu      sync.Mutex
	byPlace map[place]ewma
	byShape map[string]ewma
	all     ewma
}

type place struct{ shape, instance string }

// ewma is a moving average; n counts its observations (0: none).
type ewma struct {
	avg float64
	n   int
}

func (e ewma) add(d time.Duration) ewma {
	if e.n == 0 {
		return ewma{avg: float64(d), n: 1}
	}
	return ewma{avg: e.avg + Weight*(float64(d)-e.avg), n: e.n + 1}
}

func (e ewma) value() (time.Duration, bool) { return time.Duration(e.avg), e.n > 0 }

// NewDurations returns empty tables.
func NewDurations() *Durations {
	return &Durations{byPlace: map[place]ewma{}, byShape: map[string]ewma{}}
}

// Observe records that a run of shape took d on instance. Durations of
// zero or less are ignored.
func (d *Durations) Observe(shape, instance string, ran time.Duration) {
	if ran <= 0 || shape == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := place{shape, instance}
	if _, ok := d.byPlace[k]; !ok && len(d.byPlace) >= maxKeys {
		evict(d.byPlace)
	}
	d.byPlace[k] = d.byPlace[k].add(ran)
	if _, ok := d.byShape[shape]; !ok && len(d.byShape) >= maxKeys {
		evict(d.byShape)
	}
	d.byShape[shape] = d.byShape[shape].add(ran)
	d.all = d.all.add(ran)
}

func evict[K comparable](m map[K]ewma) {
	for k := range m {
		delete(m, k)
		return
	}
}

// Expected is how long a run of shape is expected to take on instance:
// the average of that shape there, else of that shape anywhere. False when
// the shape was never seen.
func (d *Durations) Expected(shape, instance string) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.byPlace[place{shape, instance}].value(); ok {
		return v, true
	}
	return d.byShape[shape].value()
}

// Typical is the average of every run seen, whatever its shape; false
// before the first.
func (d *Durations) Typical() (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.all.value()
}
