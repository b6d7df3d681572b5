package redisstore

import (
	"context"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Fields of a requirement hash.
const (
	fqData    = "data"
	fqCreated = "created"
)

// CapList returns every stored requirement.
func (s *Store) CapList(ctx context.Context) ([]*store.Cap, error) {
	keys, err := s.rdb.SMembers(ctx, s.keys.caps()).Result()
	if err != nil {
		return nil, wrap(err, "list caps")
	}
	slices.Sort(keys)
	out := make([]*store.Cap, 0, len(keys))
	for chunk := range slices.Chunk(keys, 256) {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		for i, k := range chunk {
			cmds[i] = pipe.HGetAll(ctx, s.keys.cap(k))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, wrap(err, "list caps")
		}
		for i, cmd := range cmds {
			m := cmd.Val()
			if len(m) == 0 {
				continue // never half written: the set and the hash go together
			}
			r := &fieldReader{m: m}
			c := &store.Cap{Key: chunk[i], Data: []byte(m[fqData]), CreatedAt: r.time(fqCreated)}
			if r.err != nil {
				return nil, wrap(r.err, "list caps")
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// CapGet returns a requirement with the instances able to run it.
func (s *Store) CapGet(ctx context.Context, key string) (*store.Cap, error) {
	pipe := s.rdb.Pipeline()
	hash := pipe.HGetAll(ctx, s.keys.cap(key))
	on := pipe.SMembers(ctx, s.keys.capOn(key))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap(err, "get cap %s", key)
	}
	m := hash.Val()
	if len(m) == 0 {
		return nil, wrap(redis.Nil, "get cap %s", key)
	}
	r := &fieldReader{m: m}
	c := &store.Cap{Key: key, Data: []byte(m[fqData]), CreatedAt: r.time(fqCreated), Instances: on.Val()}
	slices.Sort(c.Instances)
	return c, wrap(r.err, "get cap %s", key)
}

// CapSetInstance records which requirements an instance can and cannot run.
func (s *Store) CapSetInstance(ctx context.Context, p *store.CapSetInstanceParams) error {
	args := []any{s.keys.prefix, p.Instance, len(p.Can)}
	for _, k := range p.Can {
		args = append(args, k)
	}
	for _, k := range p.Cannot {
		args = append(args, k)
	}
	err := setCapableScript.Run(ctx, s.rdb, []string{s.keys.capable(p.Instance)}, args...).Err()
	return wrap(err, "set caps of %s", p.Instance)
}

// setCapableScript records which requirements an instance can run.
//
//	KEYS[1] the instance's capable set
//	ARGV[1] prefix, ARGV[2] instance id, ARGV[3] n, ARGV[4..3+n] the keys
//	it can run (stored ones only are recorded), ARGV[4+n..] the keys it
//	cannot run
//	returns 1
var setCapableScript = script(luaKeys, `
local inst, n = ARGV[2], tonumber(ARGV[3])
for i = 4, 3 + n do
  if redis.call('EXISTS', key_cap(ARGV[i])) == 1 then
    redis.call('SADD', KEYS[1], ARGV[i])
    redis.call('SADD', key_cap_on(ARGV[i]), inst)
  end
end
for i = 4 + n, #ARGV do
  redis.call('SREM', KEYS[1], ARGV[i])
  redis.call('SREM', key_cap_on(ARGV[i]), inst)
end
return 1
`)
