package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"sync"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

const (
	instanceCols = `id, enabled, alive, busy, current_task_id, last_heartbeat, last_error,
	queue_remaining, failures, device, loaded_checkpoint, catalog_hash,
	run_failures, drain_reason, drained_at, auto_drained`
	instanceGetSQL    = `SELECT ` + instanceCols + ` FROM instances WHERE id = ?`
	instanceListSQL   = `SELECT ` + instanceCols + ` FROM instances ORDER BY id`
	instanceDeleteSQL = `DELETE FROM instances WHERE id = ?`
)

// instanceUpsertSQL creates the record with defaults for the fields not given
// (enabled, not alive) or changes only the given ones: a NULL parameter keeps
// the stored value. One statement, so concurrent writers of different fields
// never overwrite each other.
const instanceUpsertSQL = `INSERT INTO instances (` + instanceCols + `) VALUES (:id,
		coalesce(:enabled, 1), coalesce(:alive, 0), coalesce(:busy, 0), coalesce(:task, ''),
		coalesce(:heartbeat, 0), coalesce(:error, ''), coalesce(:queue, 0), coalesce(:failures, 0),
		coalesce(:device, '{}'), coalesce(:checkpoint, ''), coalesce(:catalog, ''),
		coalesce(:runfail, 0), coalesce(:reason, ''), coalesce(:drainedat, 0), coalesce(:auto, 0))
	ON CONFLICT (id) DO UPDATE SET
		enabled = coalesce(:enabled, enabled), alive = coalesce(:alive, alive), busy = coalesce(:busy, busy),
		current_task_id = coalesce(:task, current_task_id), last_heartbeat = coalesce(:heartbeat, last_heartbeat),
		last_error = coalesce(:error, last_error), queue_remaining = coalesce(:queue, queue_remaining),
		failures = coalesce(:failures, failures), device = coalesce(:device, device),
		loaded_checkpoint = coalesce(:checkpoint, loaded_checkpoint), catalog_hash = coalesce(:catalog, catalog_hash),
		run_failures = coalesce(:runfail, run_failures), drain_reason = coalesce(:reason, drain_reason),
		drained_at = coalesce(:drainedat, drained_at), auto_drained = coalesce(:auto, auto_drained)
	RETURNING ` + instanceCols

// InstanceUpdate applies the fields set in p, creating the record when missing.
func (s *Store) InstanceUpdate(ctx context.Context, p *store.InstanceUpdateParams) (instance.State, error) {
	var device any
	if p.Device != nil {
		b, err := json.Marshal(p.Device)
		if err != nil {
			return instance.State{}, wrap(err, "update instance %s", p.ID)
		}
		device = string(b)
	}
	var heartbeat, drainedAt any
	if p.LastHeartbeat != nil {
		heartbeat = ms(*p.LastHeartbeat)
	}
	if p.DrainedAt != nil {
		drainedAt = ms(*p.DrainedAt)
	}
	var st instance.State
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) (err error) {
		st, err = s.scanInstance(ex.stmt(ctx, s.ws.instanceUpsert).QueryRowContext(ctx,
			sql.Named("id", p.ID), sql.Named("enabled", orNull(p.Enabled)), sql.Named("alive", orNull(p.Alive)),
			sql.Named("busy", orNull(p.Busy)), sql.Named("task", orNull(p.CurrentTaskID)),
			sql.Named("heartbeat", heartbeat), sql.Named("error", orNull(p.LastError)),
			sql.Named("queue", orNull(p.QueueRemaining)), sql.Named("failures", orNull(p.Failures)),
			sql.Named("device", device), sql.Named("checkpoint", orNull(p.LoadedCheckpoint)),
			sql.Named("catalog", orNull(p.CatalogHash)), sql.Named("runfail", orNull(p.RunFailures)),
			sql.Named("reason", orNull(p.DrainReason)), sql.Named("drainedat", drainedAt),
			sql.Named("auto", orNull(p.AutoDrained))))
		return err
	})
	return st, wrap(err, "update instance %s", p.ID)
}

// orNull binds *v, or NULL for a nil pointer.
func orNull[T any](v *T) any {
	if v == nil {
		return nil
	}
	return *v
}

// scanInstance reads one row of instanceCols.
func (s *Store) scanInstance(sc scanner) (instance.State, error) {
	var (
		st        instance.State
		heartbeat int64
		drainedAt int64
		device    string
	)
	err := sc.Scan(&st.ID, &st.Enabled, &st.Alive, &st.Busy, &st.CurrentTaskID, &heartbeat, &st.LastError,
		&st.QueueRemaining, &st.Failures, &device, &st.LoadedCheckpoint, &st.CatalogHash,
		&st.RunFailures, &st.DrainReason, &drainedAt, &st.AutoDrained)
	if err != nil {
		return instance.State{}, err
	}
	st.LastHeartbeat = fromMS(heartbeat)
	st.DrainedAt = fromMS(drainedAt)
	st.Device, err = s.devices.decode(device)
	return st, err
}

// deviceCache keeps decoded device documents by their JSON text, so that
// listing the fleet does not decode every instance's device on every call:
// the text changes only when a health check reports new figures. It
// forgets everything when it outgrows maxDevices.
type deviceCache struct {
	mu sync.Mutex // guards m
	m  map[string]instance.Device
}

// maxDevices bounds deviceCache: a few documents per instance of a fleet.
const maxDevices = 1024

// A cached Device is handed out by value, so it must hold no slice, map or
// pointer that callers would share; this fails to compile if it ever does.
var _ = map[instance.Device]struct{}(nil)

// decode returns the Device that text encodes.
func (c *deviceCache) decode(text string) (instance.Device, error) {
	c.mu.Lock()
	d, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		return instance.Device{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxDevices {
		c.m = make(map[string]instance.Device)
	}
	c.m[text] = d
	return d, nil
}

// InstanceGet returns one instance's state.
func (s *Store) InstanceGet(ctx context.Context, id string) (instance.State, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return instance.State{}, wrap(err, "get instance %s", id)
	}
	defer s.readGate.leave()
	st, err := s.scanInstance(s.rs.instanceGet.QueryRowContext(ctx, id))
	return st, wrap(err, "get instance %s", id)
}

// InstanceList returns every instance's state, by id.
func (s *Store) InstanceList(ctx context.Context) ([]instance.State, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list instances")
	}
	defer s.readGate.leave()
	rows, err := s.rs.instanceList.QueryContext(ctx)
	if err != nil {
		return nil, wrap(err, "list instances")
	}
	defer rows.Close()
	var out []instance.State
	for rows.Next() {
		st, err := s.scanInstance(rows)
		if err != nil {
			return nil, wrap(err, "list instances")
		}
		out = append(out, st)
	}
	return out, wrap(rows.Err(), "list instances")
}

// InstanceDelete forgets an instance.
func (s *Store) InstanceDelete(ctx context.Context, id string) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		return deleted(ex.stmt(ctx, s.ws.instanceDelete).ExecContext(ctx, id))
	})
	return wrap(err, "delete instance %s", id)
}

// deleted reports ErrNotFound when a DELETE removed nothing.
func deleted(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}
