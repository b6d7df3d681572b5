package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Webhook keys. A subscription is a hash; those for all of an owner's tasks
// are in the owner's ZSET and the global one (scored by CreatedAt, so
// listed oldest first, ties by id), a task's own ones in the task's SET. A
// delivery is a hash, in the due ZSET while pending (scored by NextAt) and
// in its task's ZSET (scored by CreatedAt) for the log.

func (k keys) whSub(id string) string              { return k.prefix + "webhook:sub:" + id }
func (k keys) whSubs() string                      { return k.prefix + "webhook:subs" }
func (k keys) whOwnerSubs(owner string) string     { return k.prefix + "webhook:subs:owner:" + owner }
func (k keys) whTaskSubs(task string) string       { return k.prefix + "webhook:subs:task:" + task }
func (k keys) whDelivery(id string) string         { return k.prefix + "webhook:dlv:" + id }
func (k keys) whDue() string                       { return k.prefix + "webhook:due" }
func (k keys) whTaskDeliveries(task string) string { return k.prefix + "webhook:dlvs:task:" + task }

// luaWebhookKeys mirrors the webhook key builders for the scripts (ARGV[1]
// is the prefix).
const luaWebhookKeys = `
local P = ARGV[1]
local function key_wh_sub(id) return P .. 'webhook:sub:' .. id end
local function key_wh_subs() return P .. 'webhook:subs' end
local function key_wh_owner_subs(owner) return P .. 'webhook:subs:owner:' .. owner end
local function key_wh_task_subs(task) return P .. 'webhook:subs:task:' .. task end
local function key_wh_delivery(id) return P .. 'webhook:dlv:' .. id end
local function key_wh_due() return P .. 'webhook:due' end
local function key_wh_task_deliveries(task) return P .. 'webhook:dlvs:task:' .. task end
`

// whSubInsertScript adds a subscription and indexes it.
//
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] owner, ARGV[4] task, ARGV[5] url,
//	ARGV[6] secret, ARGV[7] events, ARGV[8] CreatedAt ms
//	returns 1; CONFLICT if the id exists
var whSubInsertScript = script(luaWebhookKeys, `
local id, owner, task, created = ARGV[2], ARGV[3], ARGV[4], ARGV[8]
local k = key_wh_sub(id)
if redis.call('EXISTS', k) == 1 then return redis.error_reply('CONFLICT webhook subscription exists') end
redis.call('HSET', k, 'id', id, 'owner', owner, 'task', task, 'url', ARGV[5], 'secret', ARGV[6],
  'events', ARGV[7], 'created', created)
if task ~= '' then
  redis.call('SADD', key_wh_task_subs(task), id)
else
  redis.call('ZADD', key_wh_owner_subs(owner), created, id)
  redis.call('ZADD', key_wh_subs(), created, id)
end
return 1
`)

// whSubDeleteScript removes a subscription and its index entries.
//
//	ARGV[1] prefix, ARGV[2] id
//	returns 1; NOTFOUND if there is none
var whSubDeleteScript = script(luaWebhookKeys, `
local id = ARGV[2]
local k = key_wh_sub(id)
local f = redis.call('HMGET', k, 'owner', 'task')
if not f[1] then return redis.error_reply('NOTFOUND webhook subscription') end
redis.call('DEL', k)
if f[2] ~= '' then
  redis.call('SREM', key_wh_task_subs(f[2]), id)
else
  redis.call('ZREM', key_wh_owner_subs(f[1]), id)
  redis.call('ZREM', key_wh_subs(), id)
end
return 1
`)

// luaWebhookEnqueue queues webhook deliveries (it needs luaWebhookKeys).
const luaWebhookEnqueue = `
-- wh_any tells whether the events of a task may have subscribers: the
-- task's own subscriptions or its owner's for all tasks (an index left
-- empty is deleted, so EXISTS tells).
local function wh_any(task, owner)
  if task ~= '' and redis.call('EXISTS', key_wh_task_subs(task)) == 1 then return true end
  return redis.call('EXISTS', key_wh_owner_subs(owner)) == 1
end

-- wh_enqueue adds one pending delivery of an event per matching
-- subscription that has none yet, and returns how many it added.
local function wh_enqueue(event, typ, task, owner, payload, now)
  local ids = {}
  if task ~= '' then
    for _, id in ipairs(redis.call('SMEMBERS', key_wh_task_subs(task))) do ids[#ids + 1] = id end
  end
  for _, id in ipairs(redis.call('ZRANGE', key_wh_owner_subs(owner), 0, -1)) do ids[#ids + 1] = id end
  local n = 0
  for _, sid in ipairs(ids) do
    local f = redis.call('HMGET', key_wh_sub(sid), 'events', 'url', 'secret')
    if f[2] and (f[1] == '' or string.find(',' .. f[1] .. ',', ',' .. typ .. ',', 1, true)) then
      local did = sid .. '.' .. event
      local k = key_wh_delivery(did)
      if redis.call('EXISTS', k) == 0 then
        redis.call('HSET', k, 'id', did, 'sub', sid, 'event', event, 'type', typ, 'task', task, 'owner', owner,
          'url', f[2], 'secret', f[3], 'payload', payload, 'state', 'pending', 'attempts', '0', 'log', '[]',
          'holder', '', 'created', now, 'next', now, 'updated', now)
        redis.call('ZADD', key_wh_due(), now, did)
        if task ~= '' then redis.call('ZADD', key_wh_task_deliveries(task), now, did) end
        n = n + 1
      end
    end
  end
  return n
end
`

// whEnqueueScript adds one pending delivery of an event per matching
// subscription that has none yet.
//
//	ARGV[1] prefix, ARGV[2] event id, ARGV[3] type, ARGV[4] task,
//	ARGV[5] owner, ARGV[6] payload, ARGV[7] now ms
//	returns the number of deliveries added
var whEnqueueScript = script(luaWebhookKeys, luaWebhookEnqueue, `
return wh_enqueue(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
`)

// whClaimScript takes due deliveries under a lease.
//
//	ARGV[1] prefix, ARGV[2] holder, ARGV[3] now ms, ARGV[4] lease end ms,
//	ARGV[5] limit
//	returns {HGETALL pairs of each delivery taken}
var whClaimScript = script(luaWebhookKeys, `
local holder, now, lease = ARGV[2], ARGV[3], ARGV[4]
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key_wh_due(), '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))) do
  local k = key_wh_delivery(id)
  redis.call('HSET', k, 'holder', holder, 'next', lease, 'updated', now)
  redis.call('ZADD', key_wh_due(), lease, id)
  out[#out + 1] = redis.call('HGETALL', k)
end
return out
`)

// whRecordScript records an attempt of a held delivery.
//
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] holder, ARGV[4] state, ARGV[5] log,
//	ARGV[6] next ms, ARGV[7] now ms
//	returns the delivery as HGETALL pairs; NOTFOUND, or CONFLICT if it is
//	not pending or held by another
var whRecordScript = script(luaWebhookKeys, `
local id, holder, state = ARGV[2], ARGV[3], ARGV[4]
local k = key_wh_delivery(id)
local f = redis.call('HMGET', k, 'state', 'holder')
if not f[1] then return redis.error_reply('NOTFOUND webhook delivery') end
if f[1] ~= 'pending' or f[2] ~= holder then return redis.error_reply('CONFLICT webhook delivery not held') end
redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'state', state, 'log', ARGV[5], 'next', ARGV[6], 'holder', '', 'updated', ARGV[7])
if state == 'pending' then
  redis.call('ZADD', key_wh_due(), ARGV[6], id)
else
  redis.call('ZREM', key_wh_due(), id)
end
return redis.call('HGETALL', k)
`)

// WebhookSubInsert adds a subscription.
func (s *Store) WebhookSubInsert(ctx context.Context, sub *store.WebhookSub) error {
	err := whSubInsertScript.Run(ctx, s.rdb, nil, s.keys.prefix, sub.ID, sub.Owner, sub.TaskID, sub.URL, sub.Secret,
		strings.Join(sub.Events, ","), msArg(sub.CreatedAt)).Err()
	return wrap(err, "insert webhook subscription %s", sub.ID)
}

func decodeWebhookSub(m map[string]string) (*store.WebhookSub, error) {
	r := &fieldReader{m: m}
	sub := &store.WebhookSub{ID: m["id"], Owner: m["owner"], TaskID: m["task"], URL: m["url"], Secret: m["secret"],
		CreatedAt: r.time("created")}
	if ev := m["events"]; ev != "" {
		sub.Events = strings.Split(ev, ",")
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode webhook subscription %s: %w", sub.ID, r.err)
	}
	return sub, nil
}

// WebhookSubGet returns one subscription.
func (s *Store) WebhookSubGet(ctx context.Context, id string) (*store.WebhookSub, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.whSub(id)).Result()
	if err == nil && len(m) == 0 {
		err = redis.Nil
	}
	if err != nil {
		return nil, wrap(err, "get webhook subscription %s", id)
	}
	sub, err := decodeWebhookSub(m)
	return sub, wrap(err, "get webhook subscription %s", id)
}

// hashes reads the hashes of ids with one round trip, skipping those gone.
func (s *Store) hashes(ctx context.Context, ids []string, key func(string) string) ([]map[string]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, key(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([]map[string]string, 0, len(ids))
	for _, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			out = append(out, m)
		}
	}
	return out, nil
}

// WebhookSubList returns the subscriptions for all tasks of an owner.
func (s *Store) WebhookSubList(ctx context.Context, p *store.WebhookSubListParams) ([]*store.WebhookSub, error) {
	index := s.keys.whSubs()
	if p.Owner != "" {
		index = s.keys.whOwnerSubs(p.Owner)
	}
	ids, err := s.rdb.ZRange(ctx, index, 0, -1).Result()
	if err != nil {
		return nil, wrap(err, "list webhook subscriptions")
	}
	ms, err := s.hashes(ctx, ids, s.keys.whSub)
	if err != nil {
		return nil, wrap(err, "list webhook subscriptions")
	}
	out := make([]*store.WebhookSub, 0, len(ms))
	for _, m := range ms {
		sub, err := decodeWebhookSub(m)
		if err != nil {
			return nil, wrap(err, "list webhook subscriptions")
		}
		out = append(out, sub)
	}
	return out, nil
}

// WebhookSubDelete removes a subscription.
func (s *Store) WebhookSubDelete(ctx context.Context, id string) error {
	return wrap(whSubDeleteScript.Run(ctx, s.rdb, nil, s.keys.prefix, id).Err(), "delete webhook subscription %s", id)
}

// WebhookEnqueue adds the deliveries of one event.
func (s *Store) WebhookEnqueue(ctx context.Context, p *store.WebhookEnqueueParams) (int, error) {
	n, err := whEnqueueScript.Run(ctx, s.rdb, nil, s.keys.prefix, p.EventID, p.Type, p.TaskID, p.Owner,
		p.Payload, msArg(p.Now)).Int()
	if err != nil {
		return 0, wrap(err, "enqueue webhook event %s", p.EventID)
	}
	return n, nil
}

func decodeDelivery(m map[string]string) (*store.WebhookDelivery, error) {
	r := &fieldReader{m: m}
	d := &store.WebhookDelivery{
		ID: m["id"], SubID: m["sub"], EventID: m["event"], Type: m["type"], TaskID: m["task"], Owner: m["owner"],
		URL: m["url"], Secret: m["secret"], Payload: []byte(m["payload"]), State: m["state"],
		Attempts: int(r.int("attempts")), CreatedAt: r.time("created"), NextAt: r.time("next"), UpdatedAt: r.time("updated"),
	}
	r.json("log", &d.Log)
	if r.err != nil {
		return nil, fmt.Errorf("decode webhook delivery %s: %w", d.ID, r.err)
	}
	return d, nil
}

// WebhookClaim takes due deliveries under a lease.
func (s *Store) WebhookClaim(ctx context.Context, p *store.WebhookClaimParams) ([]*store.WebhookDelivery, error) {
	v, err := whClaimScript.Run(ctx, s.rdb, nil, s.keys.prefix, p.Holder, msArg(p.Now), msArg(p.Now.Add(p.LeaseTTL)),
		max(p.Limit, 1)).Slice()
	if err != nil {
		return nil, wrap(err, "claim webhook deliveries")
	}
	out := make([]*store.WebhookDelivery, 0, len(v))
	for _, item := range v {
		m, err := pairs(item)
		if err != nil {
			return nil, wrap(err, "claim webhook deliveries")
		}
		d, err := decodeDelivery(m)
		if err != nil {
			return nil, wrap(err, "claim webhook deliveries")
		}
		out = append(out, d)
	}
	return out, nil
}

// WebhookRecord records an attempt of a held delivery.
func (s *Store) WebhookRecord(ctx context.Context, p *store.WebhookRecordParams) (*store.WebhookDelivery, error) {
	log, err := json.Marshal(store.TrimWebhookLog(p.Log))
	if err != nil {
		return nil, wrap(err, "record webhook delivery %s", p.ID)
	}
	next := p.NextAt
	if p.State != store.DeliveryPending {
		next = p.Now
	}
	v, err := whRecordScript.Run(ctx, s.rdb, nil, s.keys.prefix, p.ID, p.Holder, p.State, log,
		msArg(next), msArg(p.Now)).Result()
	if err != nil {
		return nil, wrap(err, "record webhook delivery %s", p.ID)
	}
	m, err := pairs(v)
	if err != nil {
		return nil, wrap(err, "record webhook delivery %s", p.ID)
	}
	d, err := decodeDelivery(m)
	return d, wrap(err, "record webhook delivery %s", p.ID)
}

// WebhookDeliveries returns a task's deliveries, oldest first.
func (s *Store) WebhookDeliveries(ctx context.Context, taskID string) ([]*store.WebhookDelivery, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.whTaskDeliveries(taskID), 0, -1).Result()
	if err != nil {
		return nil, wrap(err, "list webhook deliveries of %s", taskID)
	}
	ms, err := s.hashes(ctx, ids, s.keys.whDelivery)
	if err != nil {
		return nil, wrap(err, "list webhook deliveries of %s", taskID)
	}
	out := make([]*store.WebhookDelivery, 0, len(ms))
	for _, m := range ms {
		d, err := decodeDelivery(m)
		if err != nil {
			return nil, wrap(err, "list webhook deliveries of %s", taskID)
		}
		out = append(out, d)
	}
	return out, nil
}

// WebhookNextDue returns when the next pending delivery is due.
func (s *Store) WebhookNextDue(ctx context.Context) (time.Time, bool, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, s.keys.whDue(), 0, 0).Result()
	if err != nil {
		return time.Time{}, false, wrap(err, "next webhook delivery")
	}
	if len(zs) == 0 {
		return time.Time{}, false, nil
	}
	return fromMS(int64(zs[0].Score)), true, nil
}
