// Package health probes every ComfyUI instance of the fleet each interval,
// concurrently and with a timeout, and records alive, lastHeartbeat, device
// facts and ComfyUI's own queue length. One replica of the fleet probes at a
// time: the holder of the "health-leader" lease.
package health

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// LeaseName is the lease that elects the probing replica.
const LeaseName = "health-leader"

// Result is what one successful probe learned.
type Result struct {
	Device         instance.Device
	QueueRemaining int
}

// Prober probes one instance; an error means the probe failed.
type Prober interface {
	Probe(ctx context.Context, in instance.Instance) (Result, error)
}

// WorkProber runs a workflow on an instance to completion: the probe an
// automatically drained instance must pass before it is enabled again. An
// error means it did not complete.
type WorkProber interface {
	// ProbeWork runs workflow (API format; nil: the prober's own) on in.
	ProbeWork(ctx context.Context, in instance.Instance, workflow []byte) error
}

// Settings are the live-tunable knobs of the checker.
type Settings struct {
	Interval         time.Duration
	Timeout          time.Duration
	FailureThreshold int
	// DrainCooldown is how long an automatically drained instance rests
	// before a passing probe enables it again (fleet.Reenable).
	DrainCooldown time.Duration
	// ProbeWorkflow is what a WorkProber runs (nil: its own) and
	// ProbeTimeout bounds one run.
	ProbeWorkflow []byte
	ProbeTimeout  time.Duration
}

// Checker is the probe loop.
type Checker struct {
	fleet   *fleet.Fleet
	leases  store.LeaseStore
	prober  Prober
	replica string
	log     *slog.Logger
	now     func() time.Time

	// mu guards settings; reset wakes Run when they change.
	mu       sync.Mutex
	settings Settings
	reset    chan struct{}

	// upMu guards onUp and known.
	upMu sync.Mutex
	onUp func(ctx context.Context, in instance.Instance) error
	// known holds the instances onUp succeeded for since their last failed probe.
	known map[string]bool

	// work runs the probe workflow of drained instances (nil: a passing
	// probe is enough). workMu guards working, the instances whose
	// probe workflow runs now; works tracks those goroutines, which Run
	// waits for.
	work    WorkProber
	workMu  sync.Mutex
	working map[string]bool
	works   sync.WaitGroup
}

// SetWorkProber makes an automatically drained instance pass w's probe
// workflow, after its cooldown, before it is enabled again. Call it before
// Run.
func (c *Checker) SetWorkProber(w WorkProber) { c.work = w }

// OnUp sets a function called, in the probe's goroutine, after a
// successful probe of an instance this checker has not seen up since its
// last failed probe: the first probe, and the first after a failure (a
// restart, most likely). An error makes the next successful probe call it
// again. The app reads the instance's node catalogue there.
func (c *Checker) OnUp(fn func(ctx context.Context, in instance.Instance) error) {
	c.upMu.Lock()
	defer c.upMu.Unlock()
	c.onUp, c.known = fn, map[string]bool{}
}

// up calls onUp for in unless it succeeded since in's last failed probe.
func (c *Checker) up(ctx context.Context, in instance.Instance) {
	c.upMu.Lock()
	fn, known := c.onUp, c.known[in.ID]
	c.upMu.Unlock()
	if fn == nil || known {
		return
	}
	if err := fn(ctx, in); err != nil {
		if ctx.Err() == nil {
			c.log.WarnContext(ctx, "instance up hook failed", "instance_id", in.ID, "err", err)
		}
		return
	}
	c.upMu.Lock()
	c.known[in.ID] = true
	c.upMu.Unlock()
}

// down forgets that in was seen up.
func (c *Checker) down(id string) {
	c.upMu.Lock()
	defer c.upMu.Unlock()
	delete(c.known, id)
}

// New returns a checker; call Run to start it.
func New(f *fleet.Fleet, leases store.LeaseStore, p Prober, replica string, s Settings, log *slog.Logger) *Checker {
	return &Checker{
		fleet: f, leases: leases, prober: p, replica: replica, log: log,
		now: time.Now, settings: s, reset: make(chan struct{}, 1),
	}
}

// SetSettings applies new settings at once (the next probe round starts now).
func (c *Checker) SetSettings(s Settings) {
	c.mu.Lock()
	c.settings = s
	c.mu.Unlock()
	c.Kick()
}

// Kick asks for a probe round now (e.g. after instances were added).
func (c *Checker) Kick() {
	select {
	case c.reset <- struct{}{}:
	default:
	}
}

func (c *Checker) current() Settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settings
}

// Run probes every interval until ctx ends. Membership changes of the fleet
// trigger an immediate round.
func (c *Checker) Run(ctx context.Context) error {
	watch, stop := c.fleet.Watch()
	defer stop()
	defer c.works.Wait()
	for {
		s := c.current()
		if err := c.RunOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.WarnContext(ctx, "health round failed", "err", err)
		}
		timer := time.NewTimer(s.Interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		case <-c.reset:
			timer.Stop()
		case <-watch:
			timer.Stop()
		}
	}
}

// RunOnce probes every instance once if this replica holds the leader lease.
func (c *Checker) RunOnce(ctx context.Context) error {
	s := c.current()
	leader, err := c.leases.LeaseAcquire(ctx, &store.LeaseParams{
		Name: LeaseName, Holder: c.replica, TTL: 3 * s.Interval, Now: c.now(),
	})
	if err != nil {
		return fmt.Errorf("health: acquire leader lease: %w", err)
	}
	if !leader {
		return nil
	}
	var wg sync.WaitGroup
	for _, in := range c.fleet.Instances() {
		wg.Go(func() { c.probeOne(ctx, in, s) })
	}
	wg.Wait()
	return nil
}

func (c *Checker) probeOne(ctx context.Context, in instance.Instance, s Settings) {
	pctx, cancel := context.WithTimeout(ctx, s.Timeout)
	res, err := c.prober.Probe(pctx, in)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		c.down(in.ID)
		c.recordFailure(ctx, in, s, err)
		return
	}
	now := c.now().UTC()
	alive, zero, empty := true, 0, ""
	st, uerr := c.fleet.Update(ctx, &store.InstanceUpdateParams{
		ID: in.ID, Alive: &alive, LastHeartbeat: &now, Failures: &zero, LastError: &empty,
		QueueRemaining: &res.QueueRemaining, Device: &res.Device,
	})
	if uerr != nil {
		c.log.WarnContext(ctx, "record probe failed", "instance_id", in.ID, "err", uerr)
	} else if fleet.ReenableDue(st, s.DrainCooldown, now) {
		c.reenable(ctx, in, st, s)
	}
	c.up(ctx, in)
}

// reenable enables automatically drained instance in (state st, its
// cooldown over) again: at once without a WorkProber, else once its probe
// workflow completed, run in a goroutine of its own so a slow workflow
// never holds up the probe rounds. A failed run keeps it drained for
// another cooldown (fleet.ProbeFailed).
func (c *Checker) reenable(ctx context.Context, in instance.Instance, st instance.State, s Settings) {
	if c.work == nil {
		if _, err := c.fleet.Reenable(ctx, st, s.DrainCooldown, c.now().UTC()); err != nil {
			c.log.WarnContext(ctx, "enable a drained instance failed", "instance_id", in.ID, "err", err)
		}
		return
	}
	c.workMu.Lock()
	defer c.workMu.Unlock()
	if c.working[in.ID] {
		return
	}
	if c.working == nil {
		c.working = map[string]bool{}
	}
	c.working[in.ID] = true
	c.works.Go(func() {
		defer func() {
			c.workMu.Lock()
			delete(c.working, in.ID)
			c.workMu.Unlock()
		}()
		c.log.InfoContext(ctx, "running the probe workflow on a drained instance", "instance_id", in.ID)
		pctx, cancel := context.WithTimeout(ctx, s.ProbeTimeout)
		err := c.work.ProbeWork(pctx, in, s.ProbeWorkflow)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if ferr := c.fleet.ProbeFailed(ctx, in.ID, err, c.now().UTC()); ferr != nil {
				c.log.WarnContext(ctx, "record a failed probe workflow failed", "instance_id", in.ID, "err", ferr)
			}
			return
		}
		st, err := c.fleet.Get(ctx, in.ID)
		if err == nil {
			_, err = c.fleet.Reenable(ctx, st, s.DrainCooldown, c.now().UTC())
		}
		if err != nil {
			c.log.WarnContext(ctx, "enable a drained instance failed", "instance_id", in.ID, "err", err)
		}
	})
}

func (c *Checker) recordFailure(ctx context.Context, in instance.Instance, s Settings, perr error) {
	st, err := c.fleet.Get(ctx, in.ID)
	if err != nil {
		c.log.WarnContext(ctx, "read instance state failed", "instance_id", in.ID, "err", err)
		return
	}
	failures := st.Failures + 1
	msg := perr.Error()
	p := &store.InstanceUpdateParams{ID: in.ID, Failures: &failures, LastError: &msg}
	if failures >= s.FailureThreshold && st.Alive {
		dead := false
		p.Alive = &dead
		c.log.WarnContext(ctx, "instance is down", "instance_id", in.ID, "failures", failures, "err", perr)
	}
	if _, err := c.fleet.Update(ctx, p); err != nil {
		c.log.WarnContext(ctx, "record probe failure failed", "instance_id", in.ID, "err", err)
	}
}
