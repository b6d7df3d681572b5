package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Fields of a catalogue hash.
const (
	fcData    = "data"
	fcCreated = "created"
)

// CatalogPut stores a catalogue once per hash.
func (s *Store) CatalogPut(ctx context.Context, p *store.CatalogPutParams) (bool, error) {
	n, err := putCatalogScript.Run(ctx, s.rdb, []string{s.keys.catalog(p.Hash)}, []byte(p.Data), msArg(p.Now)).Int()
	if err != nil {
		return false, wrap(err, "put catalog %s", p.Hash)
	}
	return n == 1, nil
}

// CatalogGet returns a stored catalogue.
func (s *Store) CatalogGet(ctx context.Context, hash string) (*catalog.Record, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.catalog(hash)).Result()
	if err == nil && len(m) == 0 {
		err = redis.Nil
	}
	if err != nil {
		return nil, wrap(err, "get catalog %s", hash)
	}
	r := &fieldReader{m: m}
	rec := &catalog.Record{Hash: hash, Data: []byte(m[fcData]), CreatedAt: r.time(fcCreated)}
	return rec, wrap(r.err, "get catalog %s", hash)
}
