package api

import (
	"context"
	"net/http"

	"github.com/comfyfleet/comfyfleet/internal/buildinfo"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/push"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Overview is the monitor's counts: the seed's fields plus the contract's.
type Overview struct {
	TotalInstances   int            `json:"totalInstances"`
	AliveInstances   int            `json:"aliveInstances"`
	BusyInstances    int            `json:"busyInstances"`
	EnabledInstances int            `json:"enabledInstances"`
	PendingTasks     int            `json:"pendingTasks"`
	RunningTasks     int            `json:"runningTasks"`
	CompletedTasks   int            `json:"completedTasks"`
	FailedTasks      int            `json:"failedTasks"`
	CancelledTasks   int            `json:"cancelledTasks"`
	Stats            map[string]any `json:"stats,omitempty"`
}

// overview is GET /api/monitor/overview.
func (s *Server) overview(w http.ResponseWriter, r *http.Request) error {
	o, err := s.Overview(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, o)
}

// Overview computes the monitor counts (also used for global_status).
func (s *Server) Overview(ctx context.Context) (Overview, error) {
	views, err := s.deps.Fleet.Views(ctx)
	if err != nil {
		return Overview{}, err
	}
	counts, err := s.deps.Store.TaskCounts(ctx)
	if err != nil {
		return Overview{}, err
	}
	o := Overview{
		TotalInstances: len(views),
		PendingTasks:   counts[task.StatusPending],
		RunningTasks:   counts[task.StatusRunning],
		CompletedTasks: counts[task.StatusCompleted],
		FailedTasks:    counts[task.StatusFailed],
		CancelledTasks: counts[task.StatusCancelled],
	}
	for _, v := range views {
		o.AliveInstances += b2i(v.Alive)
		o.BusyInstances += b2i(v.Busy)
		o.EnabledInstances += b2i(v.Enabled)
	}
	if s.deps.Stats != nil {
		o.Stats = s.deps.Stats.Stats()
	}
	return o, nil
}

// GlobalStatus is the data of the /ws global_status message: the overview
// and every instance. It is a push.Personal: a user sees the current task's
// id of the instances that run one of their tasks only.
func (s *Server) GlobalStatus(ctx context.Context) (any, error) {
	o, err := s.Overview(ctx)
	if err != nil {
		return nil, err
	}
	views, err := s.deps.Fleet.Views(ctx)
	if err != nil {
		return nil, err
	}
	g := &globalStatus{overview: o, views: views, owners: map[string]bool{}}
	for _, v := range views {
		if v.CurrentTaskOwner != "" {
			g.owners[v.CurrentTaskOwner] = true
		}
	}
	return g, nil
}

// globalStatus is the data of global_status for every viewer.
type globalStatus struct {
	overview Overview
	views    []fleet.View
	// owners are the users with a task running.
	owners map[string]bool
}

var _ push.Personal = (*globalStatus)(nil)

// Variant: admins see every instance as it is, a user who owns a running
// task sees a variant of their own, every other user one without task ids:
// at most one variant per running task's owner, plus two.
func (g *globalStatus) Variant(c push.Client) string {
	switch {
	case c.Admin:
		return "admin"
	case g.owners[c.Username]:
		return "owner:" + c.Username
	}
	return "user"
}

// Data is the overview and the instances as c may see them.
func (g *globalStatus) Data(_ string, c push.Client) any {
	views := make([]fleet.View, len(g.views))
	for i, v := range g.views {
		views[i] = v.ForViewer(c.Username, c.Admin)
	}
	return map[string]any{"overview": g.overview, "instances": views}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// health is GET /api/health: no token; 503 when the store is unreachable.
// The instance counts live in the store: while it is unreachable they are
// unknown, so they are left out and "storeStatus" says why, rather than
// reporting 0 alive instances.
func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	driver := s.deps.Store.Driver()
	redis, status, code := "disabled", "ok", http.StatusOK
	data := map[string]any{"store": driver, "storeStatus": "reachable", "files": "writable", "version": buildinfo.Get().Version}
	if err := s.deps.Store.Ping(r.Context()); err != nil {
		status, code = "degraded", http.StatusServiceUnavailable
		data["storeStatus"] = "unreachable"
		if driver == "redis" {
			redis = "disconnected"
		}
	} else {
		if driver == "redis" {
			redis = "connected"
		}
		if views, err := s.deps.Fleet.Views(r.Context()); err == nil {
			alive := 0
			for _, v := range views {
				alive += b2i(v.Alive)
			}
			data["aliveInstances"], data["totalInstances"] = alive, len(views)
		}
	}
	data["status"], data["redis"] = status, redis
	if s.deps.FilesWritable != nil {
		if ok, why := s.deps.FilesWritable(); !ok {
			// Finished work waits for the file store and no new task is
			// claimed: degraded, but the API still serves, so 200.
			data["status"], data["files"], data["filesError"] = "degraded", "unwritable", why
		}
	}
	return writeEnvelope(w, code, envelope{Code: code, Data: data})
}

// livez is GET /livez: no token; 200 while the process serves HTTP. It
// checks nothing else, so an orchestrator restarts the process only when
// it no longer answers at all.
func (s *Server) livez(w http.ResponseWriter, r *http.Request) error {
	return writeEnvelope(w, http.StatusOK, envelope{Code: http.StatusOK, Data: map[string]any{"status": "alive"}})
}

// readyz is GET /readyz: no token; 200 when this replica should get
// traffic (Deps.Ready: store reachable, not draining, config valid), else
// 503. The answer names each check's state and never an error's text, so
// it carries no address, URL or secret.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ready, checks := true, map[string]string{}
	if s.deps.Ready != nil {
		ready, checks = s.deps.Ready(r.Context())
	}
	status, code := "ready", http.StatusOK
	if !ready {
		status, code = "not_ready", http.StatusServiceUnavailable
	}
	return writeEnvelope(w, code, envelope{Code: code, Data: map[string]any{"status": status, "checks": checks}})
}
