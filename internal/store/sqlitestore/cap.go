package sqlitestore

import (
	"context"
	"encoding/json"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

const (
	// capPutSQL stores a requirement unless its key is stored already.
	capPutSQL = `INSERT INTO caps (key, data, created_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING`
	// capInstancesPutSQL records the instances (a JSON list) able to run a requirement.
	capInstancesPutSQL = `INSERT OR IGNORE INTO cap_instances (instance_id, cap_key)
		SELECT value, ? FROM json_each(?)`
	// capCanSQL records that an instance can run the stored requirements of a JSON list.
	capCanSQL = `INSERT OR IGNORE INTO cap_instances (instance_id, cap_key)
		SELECT ?1, value FROM json_each(?2) WHERE value IN (SELECT key FROM caps)`
	// capCannotSQL forgets that an instance can run the requirements of a JSON list.
	capCannotSQL = `DELETE FROM cap_instances WHERE instance_id = ?1 AND cap_key IN (SELECT value FROM json_each(?2))`

	capListSQL      = `SELECT key, data, created_at FROM caps ORDER BY key`
	capGetSQL       = `SELECT key, data, created_at FROM caps WHERE key = ?`
	capInstancesSQL = `SELECT instance_id FROM cap_instances WHERE cap_key = ? ORDER BY instance_id`
)

// capPut stores a new task's requirement and, the first time, the
// instances able to run it; TaskInsert calls it in its transaction.
func (s *Store) capPut(ctx context.Context, ex execer, c *store.CapParams, now int64) error {
	res, err := ex.stmt(ctx, s.ws.capPut).ExecContext(ctx, c.Key, []byte(c.Data), now)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	list, err := jsonList(c.Instances)
	if err != nil {
		return err
	}
	_, err = ex.stmt(ctx, s.ws.capInstancesPut).ExecContext(ctx, c.Key, list)
	return err
}

// jsonList encodes a list of strings for json_each; never null.
func jsonList(l []string) (string, error) {
	if l == nil {
		l = []string{}
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// CapList returns every stored requirement.
func (s *Store) CapList(ctx context.Context) ([]*store.Cap, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list caps")
	}
	defer s.readGate.leave()
	rows, err := s.rs.capList.QueryContext(ctx)
	if err != nil {
		return nil, wrap(err, "list caps")
	}
	defer rows.Close()
	var out []*store.Cap
	for rows.Next() {
		var c store.Cap
		var created int64
		if err := rows.Scan(&c.Key, &c.Data, &created); err != nil {
			return nil, wrap(err, "list caps")
		}
		c.CreatedAt = fromMS(created)
		out = append(out, &c)
	}
	return out, wrap(rows.Err(), "list caps")
}

// CapGet returns a requirement with the instances able to run it.
func (s *Store) CapGet(ctx context.Context, key string) (*store.Cap, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "get cap %s", key)
	}
	defer s.readGate.leave()
	var c store.Cap
	var created int64
	if err := s.rs.capGet.QueryRowContext(ctx, key).Scan(&c.Key, &c.Data, &created); err != nil {
		return nil, wrap(err, "get cap %s", key)
	}
	c.CreatedAt = fromMS(created)
	rows, err := s.rs.capInstances.QueryContext(ctx, key)
	if err != nil {
		return nil, wrap(err, "get cap %s", key)
	}
	defer rows.Close()
	c.Instances = []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap(err, "get cap %s", key)
		}
		c.Instances = append(c.Instances, id)
	}
	return &c, wrap(rows.Err(), "get cap %s", key)
}

// CapSetInstance records which requirements an instance can and cannot run.
func (s *Store) CapSetInstance(ctx context.Context, p *store.CapSetInstanceParams) error {
	can, err := jsonList(p.Can)
	if err != nil {
		return wrap(err, "set caps of %s", p.Instance)
	}
	cannot, err := jsonList(p.Cannot)
	if err != nil {
		return wrap(err, "set caps of %s", p.Instance)
	}
	err = s.w.execTx(ctx, func(ctx context.Context, ex execer) error {
		if _, err := ex.stmt(ctx, s.ws.capCan).ExecContext(ctx, p.Instance, can); err != nil {
			return err
		}
		_, err := ex.stmt(ctx, s.ws.capCannot).ExecContext(ctx, p.Instance, cannot)
		return err
	})
	return wrap(err, "set caps of %s", p.Instance)
}
