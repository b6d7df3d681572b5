package dispatch

import (
	"context"
	"encoding/json"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// leaseName is the store lease that gives a replica an instance.
func leaseName(instanceID string) string { return "instance:" + instanceID }

// leaseLoop takes and renews instance leases every LeaseTTL/3, whenever
// the fleet changes and when a lease is about to run out, starting a
// driver for each instance it holds and stopping the drivers of instances
// it lost, whose lease ran out while the store could not be reached, or
// that left the config.
func (d *Dispatcher) leaseLoop(ctx context.Context) error {
	watch, stop := d.opts.Fleet.Watch()
	defer stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		d.renewLeases(ctx)
		timer.Reset(d.nextLeaseCheck())
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-watch:
		}
	}
}

// nextLeaseCheck is the wait until the next renewal: LeaseTTL/3, or less
// when a lease held by a driver runs out sooner (its renewals failed).
func (d *Dispatcher) nextLeaseCheck() time.Duration {
	wait := d.opts.LeaseTTL / 3
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dr := range d.drivers {
		if left := time.Until(dr.leaseExpiry()) + time.Millisecond; left < wait {
			wait = max(left, time.Millisecond)
		}
	}
	return wait
}

func (d *Dispatcher) renewLeases(ctx context.Context) {
	configured := map[string]bool{}
	for _, in := range d.opts.Fleet.Instances() {
		configured[in.ID] = true
		if d.draining.Load() && d.driver(in.ID) == nil {
			continue // draining: keep only the leases of instances with runs to finish
		}
		asked := time.Now()
		held, err := d.opts.Store.LeaseAcquire(ctx, &store.LeaseParams{
			Name: leaseName(in.ID), Holder: d.opts.Replica, TTL: d.opts.LeaseTTL, Now: asked,
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			// The store is unreachable: keep driving while the lease lasts,
			// then stop, for another replica may hold it by now.
			d.log.WarnContext(ctx, "renew instance lease failed", "instance_id", in.ID, "err", err)
			if dr := d.driver(in.ID); dr != nil && !dr.holdsLease() {
				d.log.WarnContext(ctx, "instance lease ran out; stop driving", "instance_id", in.ID)
				d.stopDriver(in.ID, false)
			}
		case held:
			d.ensureDriver(ctx, in.ID, asked.Add(d.opts.LeaseTTL))
		default:
			d.stopDriver(in.ID, false)
		}
	}
	d.mu.Lock()
	var gone []string
	for id := range d.drivers {
		if !configured[id] {
			gone = append(gone, id)
		}
	}
	d.mu.Unlock()
	for _, id := range gone {
		d.stopDriver(id, true)
	}
	// Events are best effort (a Redis restart loses those published while it
	// was down), so this slow tick also looks for work once; the fast path
	// stays the events.
	d.Wake()
}

// ensureDriver drives instance id with a lease valid until until, starting
// a driver if there is none.
func (d *Dispatcher) ensureDriver(ctx context.Context, id string, until time.Time) {
	in, ok := d.opts.Fleet.Lookup(id)
	if !ok {
		return
	}
	d.mu.Lock()
	if dr, ok := d.drivers[id]; ok {
		d.mu.Unlock()
		dr.extendLease(until)
		return
	}
	if d.draining.Load() {
		d.mu.Unlock()
		_ = d.opts.Store.LeaseRelease(context.WithoutCancel(ctx), leaseName(id), d.opts.Replica)
		return
	}
	dr := newDriver(ctx, d, in, until)
	d.drivers[id] = dr
	d.mu.Unlock()
	d.log.InfoContext(ctx, "driving instance", "instance_id", id, "replica", d.opts.Replica)
	dr.startLoop()
}

// stopDriver stops driving an instance. drain waits for its run to end
// first (the instance left the config); otherwise it stops at once and the
// run stays running in the store for the next lease holder.
func (d *Dispatcher) stopDriver(id string, drain bool) {
	d.mu.Lock()
	dr, ok := d.drivers[id]
	if ok && (!drain || !dr.busy()) {
		delete(d.drivers, id)
	} else {
		ok = false
	}
	d.mu.Unlock()
	if !ok {
		if drain {
			d.mu.Lock()
			if dr := d.drivers[id]; dr != nil {
				dr.setDraining()
			}
			d.mu.Unlock()
		}
		return
	}
	dr.stop()
	_ = d.opts.Store.LeaseRelease(context.Background(), leaseName(id), d.opts.Replica)
}

func (d *Dispatcher) stopAll() {
	d.mu.Lock()
	drivers := d.drivers
	d.drivers = map[string]*driver{}
	d.mu.Unlock()
	for id, dr := range drivers {
		dr.stop()
		_ = d.opts.Store.LeaseRelease(context.Background(), leaseName(id), d.opts.Replica)
	}
}

// instanceIDOf reads instanceId from an instance_status event.
func instanceIDOf(ev event.Event) string {
	var v struct {
		InstanceID string `json:"instanceId"`
	}
	_ = json.Unmarshal(ev.Data, &v)
	return v.InstanceID
}
