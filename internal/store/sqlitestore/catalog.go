package sqlitestore

import (
	"context"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

const (
	// catalogPutSQL stores a catalogue unless its hash is stored already.
	catalogPutSQL = `INSERT INTO catalogs (hash, data, created_at) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING`
	catalogGetSQL = `SELECT hash, data, created_at FROM catalogs WHERE hash = ?`
)

// CatalogPut stores a catalogue once per hash.
func (s *Store) CatalogPut(ctx context.Context, p *store.CatalogPutParams) (bool, error) {
	var created bool
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		res, err := ex.stmt(ctx, s.ws.catalogPut).ExecContext(ctx, p.Hash, []byte(p.Data), ms(p.Now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		created = n == 1
		return err
	})
	return created, wrap(err, "put catalog %s", p.Hash)
}

// CatalogGet returns a stored catalogue.
func (s *Store) CatalogGet(ctx context.Context, hash string) (*catalog.Record, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "get catalog %s", hash)
	}
	defer s.readGate.leave()
	var r catalog.Record
	var created int64
	err = s.rs.catalogGet.QueryRowContext(ctx, hash).Scan(&r.Hash, &r.Data, &created)
	if err != nil {
		return nil, wrap(err, "get catalog %s", hash)
	}
	r.CreatedAt = fromMS(created)
	return &r, nil
}
