package sqlitestore

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/comfyfleet/comfyfleet/internal/apikey"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

const (
	keyCols      = `id, owner, name, scopes, hash, created_at, expires_at, last_used_at, revoked_at`
	keyInsertSQL = `INSERT INTO api_keys (` + keyCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	keyGetSQL    = `SELECT ` + keyCols + ` FROM api_keys WHERE id = ?`
	keyListSQL   = `SELECT ` + keyCols + ` FROM api_keys WHERE ?1 = '' OR owner = ?1 ORDER BY created_at DESC, id DESC`
	keyRevokeSQL = `UPDATE api_keys SET revoked_at = CASE WHEN revoked_at = 0 THEN ?2 ELSE revoked_at END
		WHERE id = ?1 RETURNING ` + keyCols
	keyTouchSQL = `UPDATE api_keys SET last_used_at = max(last_used_at, ?2) WHERE id = ?1`
)

// KeyInsert adds an API key; a duplicate id is ErrConflict.
func (s *Store) KeyInsert(ctx context.Context, k *apikey.Key) error {
	scopes, err := json.Marshal(k.Scopes)
	if err != nil {
		return wrap(err, "insert key %s", k.ID)
	}
	err = s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		_, err := ex.stmt(ctx, s.ws.keyInsert).ExecContext(ctx, k.ID, k.Owner, k.Name, string(scopes), k.Hash,
			ms(k.CreatedAt), ms(k.ExpiresAt), ms(k.LastUsedAt), ms(k.RevokedAt))
		return err
	})
	return wrap(err, "insert key %s", k.ID)
}

func scanKey(sc scanner) (*apikey.Key, error) {
	var k apikey.Key
	var scopes string
	var created, expires, used, revoked int64
	if err := sc.Scan(&k.ID, &k.Owner, &k.Name, &scopes, &k.Hash, &created, &expires, &used, &revoked); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, errors.Join(errors.New("decode scopes"), err)
	}
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromMS(expires), fromMS(used), fromMS(revoked)
	return &k, nil
}

// KeyGet returns one API key.
func (s *Store) KeyGet(ctx context.Context, id string) (*apikey.Key, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "get key %s", id)
	}
	defer s.readGate.leave()
	k, err := scanKey(s.rs.keyGet.QueryRowContext(ctx, id))
	return k, wrap(err, "get key %s", id)
}

// KeyList returns an owner's keys, or every key, newest first.
func (s *Store) KeyList(ctx context.Context, p *store.KeyListParams) ([]*apikey.Key, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list keys")
	}
	defer s.readGate.leave()
	rows, err := s.rs.keyList.QueryContext(ctx, p.Owner)
	if err != nil {
		return nil, wrap(err, "list keys")
	}
	defer rows.Close()
	var out []*apikey.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, wrap(err, "list keys")
		}
		out = append(out, k)
	}
	return out, wrap(rows.Err(), "list keys")
}

// KeyRevoke marks a key revoked, keeping the first revocation's time.
func (s *Store) KeyRevoke(ctx context.Context, p *store.KeyRevokeParams) (*apikey.Key, error) {
	var k *apikey.Key
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		var err error
		k, err = scanKey(ex.stmt(ctx, s.ws.keyRevoke).QueryRowContext(ctx, p.ID, ms(p.Now)))
		return err
	})
	if err != nil {
		return nil, wrap(err, "revoke key %s", p.ID)
	}
	return k, nil
}

// KeyTouch raises a key's last-used time.
func (s *Store) KeyTouch(ctx context.Context, p *store.KeyTouchParams) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		return deleted(ex.stmt(ctx, s.ws.keyTouch).ExecContext(ctx, p.ID, ms(p.Now)))
	})
	return wrap(err, "touch key %s", p.ID)
}
