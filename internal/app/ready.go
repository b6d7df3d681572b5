package app

import (
	"context"
	"time"
)

// readyPingTimeout bounds the store ping of one readiness check, well
// under the probe timeouts orchestrators use (1 s in Kubernetes).
const readyPingTimeout = 800 * time.Millisecond

// SetDraining marks this replica as draining (or not): GET /readyz answers
// 503 from then on, so load balancers stop sending it requests while it
// finishes its work. Safe for concurrent use.
func (a *App) SetDraining(on bool) { a.draining.Store(on) }

// Draining reports whether SetDraining(true) is in force.
func (a *App) Draining() bool { return a.draining.Load() }

// readiness is GET /readyz's answer: ready when the store answers, the
// replica is not draining and the live config validates. Each check is
// named with its state, never an error's text (no address or secret).
func (a *App) readiness(ctx context.Context) (bool, map[string]string) {
	checks := map[string]string{"store": "ok", "draining": "no", "config": "ok"}
	ready := true
	pctx, cancel := context.WithTimeout(ctx, readyPingTimeout)
	defer cancel()
	if err := a.store.Ping(pctx); err != nil {
		checks["store"], ready = "unreachable", false
	}
	if a.Draining() {
		checks["draining"], ready = "yes", false
	}
	if err := a.cfg.Current().Validate(); err != nil {
		checks["config"], ready = "invalid", false
	}
	return ready, checks
}
