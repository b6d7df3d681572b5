package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Fields of an instance hash; booleans are "1" or "0", the heartbeat is
// Unix ms and the device JSON.
const (
	fiID         = "id"
	fiEnabled    = "enabled"
	fiAlive      = "alive"
	fiBusy       = "busy"
	fiTask       = "task"
	fiHeartbeat  = "heartbeat"
	fiLastError  = "lasterr"
	fiQueue      = "queue"
	fiFailures   = "failures"
	fiDevice     = "device"
	fiCheckpoint = "ckpt"
	fiCatalog    = "catalog" // the catalogue hash, absent until read
	fiRunFail    = "runfail" // runs failed in a row for the instance's reasons
	fiDrain      = "drain"   // why it is disabled; absent for no reason given
	fiDrainedAt  = "drainedat"
	fiAuto       = "auto" // "1" when drained automatically
)

// instanceArgs lists the field, value pairs of the fields p sets.
func instanceArgs(p *store.InstanceUpdateParams) ([]any, error) {
	var args []any
	add := func(field string, v any) { args = append(args, field, v) }
	addBool := func(field string, v *bool) {
		if v != nil {
			add(field, boolArg(*v))
		}
	}
	addBool(fiEnabled, p.Enabled)
	addBool(fiAlive, p.Alive)
	addBool(fiBusy, p.Busy)
	if p.CurrentTaskID != nil {
		add(fiTask, *p.CurrentTaskID)
	}
	if p.LastHeartbeat != nil {
		add(fiHeartbeat, msArg(*p.LastHeartbeat))
	}
	if p.LastError != nil {
		add(fiLastError, *p.LastError)
	}
	if p.QueueRemaining != nil {
		add(fiQueue, strconv.Itoa(*p.QueueRemaining))
	}
	if p.Failures != nil {
		add(fiFailures, strconv.Itoa(*p.Failures))
	}
	if p.LoadedCheckpoint != nil {
		add(fiCheckpoint, *p.LoadedCheckpoint)
	}
	if p.CatalogHash != nil {
		add(fiCatalog, *p.CatalogHash)
	}
	if p.RunFailures != nil {
		add(fiRunFail, strconv.Itoa(*p.RunFailures))
	}
	if p.DrainReason != nil {
		add(fiDrain, *p.DrainReason)
	}
	if p.DrainedAt != nil {
		add(fiDrainedAt, msArg(*p.DrainedAt))
	}
	addBool(fiAuto, p.AutoDrained)
	if p.Device != nil {
		b, err := json.Marshal(p.Device)
		if err != nil {
			return nil, err
		}
		add(fiDevice, b)
	}
	return args, nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// decodeInstance builds an instance state from its hash fields.
func decodeInstance(m map[string]string) (instance.State, error) {
	r := &fieldReader{m: m}
	st := instance.State{
		ID: m[fiID], Enabled: m[fiEnabled] == "1", Alive: m[fiAlive] == "1", Busy: m[fiBusy] == "1",
		CurrentTaskID: m[fiTask], LastHeartbeat: r.time(fiHeartbeat), LastError: m[fiLastError],
		QueueRemaining: int(r.int(fiQueue)), Failures: int(r.int(fiFailures)), LoadedCheckpoint: m[fiCheckpoint],
		CatalogHash: m[fiCatalog], RunFailures: int(r.int(fiRunFail)), DrainReason: m[fiDrain],
		DrainedAt: r.time(fiDrainedAt), AutoDrained: m[fiAuto] == "1",
	}
	r.json(fiDevice, &st.Device)
	if r.err != nil {
		return instance.State{}, fmt.Errorf("decode instance %s: %w", st.ID, r.err)
	}
	return st, nil
}

// instanceReply decodes a script's HGETALL reply of one instance.
func instanceReply(v any) (instance.State, error) {
	m, err := pairs(v)
	if err != nil {
		return instance.State{}, err
	}
	return decodeInstance(m)
}

// InstanceUpdate applies the fields set in p in one script, creating the
// record (enabled, not alive) when missing.
func (s *Store) InstanceUpdate(ctx context.Context, p *store.InstanceUpdateParams) (instance.State, error) {
	fields, err := instanceArgs(p)
	if err != nil {
		return instance.State{}, wrap(err, "update instance %s", p.ID)
	}
	reply, err := updateInstanceScript.Run(ctx, s.rdb, []string{s.keys.instance(p.ID), s.keys.instances()},
		append([]any{p.ID}, fields...)...).Result()
	if err != nil {
		return instance.State{}, wrap(err, "update instance %s", p.ID)
	}
	st, err := instanceReply(reply)
	return st, wrap(err, "update instance %s", p.ID)
}

// InstanceGet returns one instance's state.
func (s *Store) InstanceGet(ctx context.Context, id string) (instance.State, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.instance(id)).Result()
	if err == nil && len(m) == 0 {
		err = redis.Nil
	}
	if err != nil {
		return instance.State{}, wrap(err, "get instance %s", id)
	}
	st, err := decodeInstance(m)
	return st, wrap(err, "get instance %s", id)
}

// InstanceList returns every instance's state, by id.
func (s *Store) InstanceList(ctx context.Context) ([]instance.State, error) {
	reply, err := listInstancesScript.Run(ctx, s.rdb, []string{s.keys.instances()}, s.keys.prefix).Slice()
	if err != nil {
		return nil, wrap(err, "list instances")
	}
	out := make([]instance.State, 0, len(reply))
	for _, item := range reply {
		st, err := instanceReply(item)
		if err != nil {
			return nil, wrap(err, "list instances")
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b instance.State) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// InstanceDelete forgets an instance.
func (s *Store) InstanceDelete(ctx context.Context, id string) error {
	err := deleteInstanceScript.Run(ctx, s.rdb, []string{s.keys.instance(id), s.keys.instances()}, id).Err()
	return wrap(err, "delete instance %s", id)
}
