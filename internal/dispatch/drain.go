package dispatch

import (
	"context"
)

// Drain prepares this replica to stop without losing or repeating work. It
// claims no task and takes no instance lease from now on; prompts waiting
// in an instance's queue that have not started (prefetched) are deleted
// there and their tasks go back to the queue with the attempt refunded;
// running prompts finish and their outputs are collected. The lease of each
// instance is given up as soon as nothing of this replica runs there, so
// another replica drives it at once.
//
// Drain returns nil once nothing is under way, or ctx's error when ctx
// ends first. Run's end then stops what is left: those tasks stay running
// in the store and on their instances, and the next holder of an
// instance's lease (another replica, or this one after a restart)
// reattaches them, as after a kill. Drain is meant to be called once,
// while Run runs; Run must still be stopped afterwards.
func (d *Dispatcher) Drain(ctx context.Context) error {
	d.draining.Store(true)
	d.mu.Lock()
	drivers := make([]*driver, 0, len(d.drivers))
	for _, dr := range d.drivers {
		drivers = append(drivers, dr)
	}
	d.mu.Unlock()
	for _, dr := range drivers {
		dr.setDraining()
		for _, r := range dr.allRuns() {
			r.signal(r.pullC) // a run that started its prompt ignores it
		}
	}
	for {
		if d.releaseIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.settled:
		}
	}
}

// Draining reports whether Drain was called.
func (d *Dispatcher) Draining() bool { return d.draining.Load() }

// releaseIdle stops the drivers with nothing under way, giving their
// instance leases up, and returns how many drivers are still busy.
func (d *Dispatcher) releaseIdle() int {
	d.mu.Lock()
	var ids []string
	for id := range d.drivers {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		d.stopDriver(id, true) // stops it only if it is not busy
	}
	return d.Drivers()
}
