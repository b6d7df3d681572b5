package app

import (
	"context"
	"time"
)

// ShutdownGrace is how long a shutdown may take (server.shutdownGrace).
func (a *App) ShutdownGrace() time.Duration {
	return time.Duration(a.cfg.Current().Server.ShutdownGrace)
}

// drain is the first step of a shutdown: readiness turns false, and the
// dispatcher claims nothing more, sends the prompts that have not started
// back to the queue and lets the running ones finish, until all are done
// or the grace (minus the reserve for what follows) runs out. It returns
// the deadline of the whole shutdown.
func (a *App) drain() time.Time {
	grace := a.ShutdownGrace()
	start := time.Now()
	deadline := start.Add(grace)
	a.SetDraining(true) // first: readiness fails before anything stops
	a.log.Info("shutting down: draining", "grace", grace.String())
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-shutdownReserve(grace)))
	defer cancel()
	if err := a.dispatch.Drain(ctx); err != nil {
		a.log.Warn("shutdown grace ran out with tasks still running; they stay running on their instances for the next holder of the instance to reattach",
			"waited", time.Since(start).Round(time.Millisecond).String())
	} else {
		a.log.Info("drained", "took", time.Since(start).Round(time.Millisecond).String())
	}
	return deadline
}

// shutdownReserve is the part of the shutdown grace kept for what follows
// the drain: stopping the HTTP servers and the components, handing back
// the runs left, closing the store. A fifth of the grace, at most 5s.
func shutdownReserve(grace time.Duration) time.Duration {
	return min(grace/5, 5*time.Second)
}

// SkipDrain makes the next shutdown skip the drain: runs stay as they are
// on their instances and in the store, as after a crash, for the next
// start to reattach. Tests of that recovery use it in-process, where a
// real kill is not possible.
func (a *App) SkipDrain() { a.skipDrain.Store(true) }
