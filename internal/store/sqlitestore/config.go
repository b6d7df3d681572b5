package sqlitestore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

const (
	configGetSQL = `SELECT doc FROM config WHERE id = 1`
	configPutSQL = `INSERT INTO config (id, doc) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc`
)

// ConfigGet returns the persisted runtime config document.
func (s *Store) ConfigGet(ctx context.Context) ([]byte, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "get config")
	}
	defer s.readGate.leave()
	var doc []byte
	err = s.rs.configGet.QueryRowContext(ctx).Scan(&doc)
	if err != nil {
		return nil, wrap(err, "get config")
	}
	return doc, nil
}

// ConfigPut replaces the persisted runtime config document.
func (s *Store) ConfigPut(ctx context.Context, doc []byte) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		_, err := ex.stmt(ctx, s.ws.configPut).ExecContext(ctx, doc)
		return err
	})
	return wrap(err, "put config")
}

// leaseAcquireSQL takes a free lease, renews the caller's, or takes an
// expired one, in one statement; when the lease is held by someone else the
// DO UPDATE's WHERE fails and no row is returned.
const leaseAcquireSQL = `INSERT INTO leases (name, holder, expires_at) VALUES (:name, :holder, :expires)
	ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= :now
	RETURNING holder`

// LeaseAcquire takes or renews a named lease and reports whether p.Holder holds it.
func (s *Store) LeaseAcquire(ctx context.Context, p *store.LeaseParams) (bool, error) {
	held := false
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		var holder string
		err := ex.stmt(ctx, s.ws.leaseAcquire).QueryRowContext(ctx, sql.Named("name", p.Name),
			sql.Named("holder", p.Holder), sql.Named("expires", ms(p.Now.Add(p.TTL))), sql.Named("now", ms(p.Now))).Scan(&holder)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // held by someone else
		}
		held = err == nil
		return err
	})
	if err != nil {
		return false, wrap(err, "acquire lease %s", p.Name)
	}
	return held, nil
}

const leaseReleaseSQL = `DELETE FROM leases WHERE name = ? AND holder = ?`

// LeaseRelease gives a lease up if holder holds it.
func (s *Store) LeaseRelease(ctx context.Context, name, holder string) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		_, err := ex.stmt(ctx, s.ws.leaseRelease).ExecContext(ctx, name, holder)
		return err
	})
	return wrap(err, "release lease %s", name)
}
