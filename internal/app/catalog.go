package app

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// catalogTimeout bounds reading one instance's /object_info (a few MB at
// most; ComfyUI builds it on request, which takes seconds with many custom
// nodes).
const catalogTimeout = 30 * time.Second

// catalogClient reads /object_info for the whole fleet.
var catalogClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}}

// refreshCatalog reads an instance's node catalogue (fleet.RefreshCatalog).
// The health checker calls it when an instance comes up; the API when an
// admin asks.
func (a *App) refreshCatalog(ctx context.Context, in instance.Instance) error {
	_, err := a.refreshCatalogID(ctx, in.ID)
	return err
}

// refreshCatalogID is refreshCatalog by instance id; store.ErrNotFound for
// an instance that is not configured.
func (a *App) refreshCatalogID(ctx context.Context, id string) (string, error) {
	in, ok := a.fleet.Lookup(id)
	if !ok {
		return "", store.ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	return a.fleet.RefreshCatalog(ctx, comfy.New(in.BaseURL(), "comfyfleet-catalog", catalogClient), id)
}

// reroute is the dispatcher's Reroute: an instance refused a task's prompt
// at validation; if another instance can run it, the task goes back to the
// queue (fleet.Reroute).
func (a *App) reroute(ctx context.Context, t *task.Task, instanceID string) bool {
	ok, err := a.fleet.Reroute(ctx, t.CapKey, instanceID)
	if err != nil {
		a.log.WarnContext(ctx, "reroute failed; the task fails", "task_id", t.ID, "instance_id", instanceID, "err", err)
	}
	return ok
}

// catalogReader reads the catalogues of the instances whose WebSocket
// connected again (the dispatcher's OnConnect: the instance may have
// restarted with other models or nodes), one at a time, on a goroutine
// App.Run owns. Requests for an instance already waiting are merged. The
// first connect of each instance is left to the health checker, which
// reads the catalogue when it first sees the instance up.
type catalogReader struct {
	wake chan struct{}
	// mu guards pending and connected.
	mu        sync.Mutex
	pending   map[string]bool
	connected map[string]bool
}

func newCatalogReader() *catalogReader {
	return &catalogReader{wake: make(chan struct{}, 1), pending: map[string]bool{}, connected: map[string]bool{}}
}

// connect is told that id's socket connected: from the second time on,
// its catalogue is read again. It never blocks.
func (r *catalogReader) connect(id string) {
	r.mu.Lock()
	again := r.connected[id]
	r.connected[id] = true
	r.mu.Unlock()
	if again {
		r.request(id)
	}
}

// request asks for id's catalogue to be read; it never blocks.
func (r *catalogReader) request(id string) {
	r.mu.Lock()
	r.pending[id] = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take returns and forgets the pending ids.
func (r *catalogReader) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.pending))
	for id := range r.pending {
		out = append(out, id)
	}
	clear(r.pending)
	return out
}

// run reads what is requested until ctx ends.
func (r *catalogReader) run(ctx context.Context, read func(ctx context.Context, id string) (string, error), log func(ctx context.Context, id string, err error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for _, id := range r.take() {
			if _, err := read(ctx, id); err != nil && ctx.Err() == nil {
				log(ctx, id, err)
			}
		}
	}
}
