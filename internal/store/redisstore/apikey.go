package redisstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/apikey"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Fields of an API key hash; times are Unix ms, 0 for "not set".
const (
	kfID      = "id"
	kfOwner   = "owner"
	kfName    = "name"
	kfScopes  = "scopes" // JSON array
	kfHash    = "hash"
	kfCreated = "created"
	kfExpires = "expires"
	kfUsed    = "used"
	kfRevoked = "revoked"
)

// decodeKey builds an API key from its hash fields.
func decodeKey(m map[string]string) (*apikey.Key, error) {
	r := &fieldReader{m: m}
	k := &apikey.Key{
		ID: m[kfID], Owner: m[kfOwner], Name: m[kfName], Hash: m[kfHash],
		CreatedAt: r.time(kfCreated), ExpiresAt: r.time(kfExpires), LastUsedAt: r.time(kfUsed), RevokedAt: r.time(kfRevoked),
	}
	r.json(kfScopes, &k.Scopes)
	if r.err != nil {
		return nil, fmt.Errorf("decode key %s: %w", k.ID, r.err)
	}
	return k, nil
}

// insertKeyScript adds an API key and indexes it newest first, globally
// and by owner.
//
//	KEYS[1] key hash, KEYS[2] keys ZSET, KEYS[3] owner's keys ZSET
//	ARGV[1] id, ARGV[2] CreatedAt ms, ARGV[3..] hash field, value pairs
//	returns 1; CONFLICT if the id exists
var insertKeyScript = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('CONFLICT key exists') end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
`)

// revokeKeyScript sets a key's revoked time unless it is set already.
//
//	KEYS[1] key hash
//	ARGV[1] now ms
//	returns the hash's fields and values; NOTFOUND if there is no such key
var revokeKeyScript = script(`
local r = redis.call('HGET', KEYS[1], 'revoked')
if not r then return redis.error_reply('NOTFOUND key') end
if r == '0' then redis.call('HSET', KEYS[1], 'revoked', ARGV[1]) end
return redis.call('HGETALL', KEYS[1])
`)

// touchKeyScript raises a key's last-used time.
//
//	KEYS[1] key hash
//	ARGV[1] now ms
//	returns 1; NOTFOUND if there is no such key
var touchKeyScript = script(`
local u = redis.call('HGET', KEYS[1], 'used')
if not u then return redis.error_reply('NOTFOUND key') end
if tonumber(ARGV[1]) > tonumber(u) then redis.call('HSET', KEYS[1], 'used', ARGV[1]) end
return 1
`)

// KeyInsert adds an API key; a duplicate id is store.ErrConflict.
func (s *Store) KeyInsert(ctx context.Context, k *apikey.Key) error {
	scopes, err := json.Marshal(k.Scopes)
	if err != nil {
		return wrap(err, "insert key %s", k.ID)
	}
	created := msArg(k.CreatedAt)
	err = insertKeyScript.Run(ctx, s.rdb, []string{s.keys.apiKey(k.ID), s.keys.apiKeys(), s.keys.ownerAPIKeys(k.Owner)},
		k.ID, created, kfID, k.ID, kfOwner, k.Owner, kfName, k.Name, kfScopes, string(scopes), kfHash, k.Hash,
		kfCreated, created, kfExpires, msArg(k.ExpiresAt), kfUsed, msArg(k.LastUsedAt), kfRevoked, msArg(k.RevokedAt)).Err()
	return wrap(err, "insert key %s", k.ID)
}

// KeyGet returns one API key.
func (s *Store) KeyGet(ctx context.Context, id string) (*apikey.Key, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.apiKey(id)).Result()
	if err == nil && len(m) == 0 {
		err = redis.Nil
	}
	if err != nil {
		return nil, wrap(err, "get key %s", id)
	}
	k, err := decodeKey(m)
	return k, wrap(err, "get key %s", id)
}

// KeyList returns an owner's keys, or every key, newest first. Keys are
// few (a handful per user), so the list is read whole.
func (s *Store) KeyList(ctx context.Context, p *store.KeyListParams) ([]*apikey.Key, error) {
	index := s.keys.apiKeys()
	if p.Owner != "" {
		index = s.keys.ownerAPIKeys(p.Owner)
	}
	ids, err := s.rdb.ZRevRange(ctx, index, 0, -1).Result()
	if err != nil {
		return nil, wrap(err, "list keys")
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, s.keys.apiKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "list keys")
	}
	out := make([]*apikey.Key, 0, len(ids))
	for _, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		k, err := decodeKey(c.Val())
		if err != nil {
			return nil, wrap(err, "list keys")
		}
		out = append(out, k)
	}
	return out, nil
}

// KeyRevoke marks a key revoked, keeping the first revocation's time.
func (s *Store) KeyRevoke(ctx context.Context, p *store.KeyRevokeParams) (*apikey.Key, error) {
	reply, err := revokeKeyScript.Run(ctx, s.rdb, []string{s.keys.apiKey(p.ID)}, msArg(p.Now)).StringSlice()
	if err != nil {
		return nil, wrap(err, "revoke key %s", p.ID)
	}
	m := make(map[string]string, len(reply)/2)
	for i := 0; i+1 < len(reply); i += 2 {
		m[reply[i]] = reply[i+1]
	}
	k, err := decodeKey(m)
	return k, wrap(err, "revoke key %s", p.ID)
}

// KeyTouch raises a key's last-used time.
func (s *Store) KeyTouch(ctx context.Context, p *store.KeyTouchParams) error {
	err := touchKeyScript.Run(ctx, s.rdb, []string{s.keys.apiKey(p.ID)}, msArg(p.Now)).Err()
	return wrap(err, "touch key %s", p.ID)
}
