package redisstore

import (
	"context"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// backfillStep is how many members one step of the retention backfill
// reads (a ZSCAN COUNT: Redis may return a few more).
const backfillStep = 500

// backfillScript takes one bounded step of filling the retention ZSETs
// with the records stored before they existed: every finished, unpinned
// task, and every unpinned file whose task is not pinned. The backfill
// walks four ZSETs with ZSCAN, in this order: list:completed, list:failed,
// list:cancelled, files:all; retention:backfill keeps where it is
// ("<phase>:<cursor>") between steps, and retention:v is set once the
// last ZSET is walked. ZSCAN returns every member present for the whole
// walk at least once, and a record stored meanwhile is indexed by the
// write that stores or finishes it, so nothing is missed; a member read
// twice is added twice with the same score. Each step is one script that
// reads about ARGV[2] members, so the backfill never holds Redis for long,
// and two replicas stepping at once share the walk.
//
//	ARGV[1] prefix, ARGV[2] members per step (ZSCAN COUNT)
//	returns 1 when the backfill is complete, 0 otherwise
var backfillScript = script(luaKeys, luaMembers, `
if redis.call('EXISTS', key_retention_version()) == 1 then return 1 end
local phases = {key_list('completed'), key_list('failed'), key_list('cancelled'), key_files()}
local phase, cursor = 1, '0'
local at = redis.call('GET', key_retention_backfill())
if at then
  local p, c = string.match(at, '^(%d+):(%d+)$')
  if p then phase, cursor = tonumber(p), c end
end
local reply = redis.call('ZSCAN', phases[phase], cursor, 'COUNT', tonumber(ARGV[2]))
local members = reply[2]
for i = 1, #members, 2 do
  if phase < 4 then
    local id = list_id(members[i])
    local f = redis.call('HMGET', key_task(id), 'status', 'finished', 'pinned')
    if (f[1] == 'completed' or f[1] == 'failed' or f[1] == 'cancelled') and f[3] ~= '1' then
      redis.call('ZADD', key_retention_tasks(), f[2], id)
    end
  else
    local id = members[i]
    local f = redis.call('HMGET', key_file(id), 'created', 'pinned', 'task')
    if f[1] and f[2] ~= '1' and (not f[3] or f[3] == '' or redis.call('HGET', key_task(f[3]), 'pinned') ~= '1') then
      redis.call('ZADD', key_retention_files(), f[1], id)
    end
  end
end
cursor = reply[1]
if cursor == '0' then
  if phase == #phases then
    redis.call('SET', key_retention_version(), '1')
    redis.call('DEL', key_retention_backfill())
    return 1
  end
  phase = phase + 1
end
redis.call('SET', key_retention_backfill(), phase .. ':' .. cursor)
return 0
`)

// expiredScript returns the oldest members of a retention ZSET scored
// below a time.
//
//	ARGV[1] prefix, ARGV[2] 'tasks' or 'files', ARGV[3] before (ms,
//	exclusive), ARGV[4] limit
//	returns the ids, oldest first
var expiredScript = script(luaKeys, `
local key = key_retention_tasks()
if ARGV[2] == 'files' then key = key_retention_files() end
return redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
`)

// deleteTaskScript deletes a finished, unpinned task and its index
// entries, with its own webhook subscriptions and its webhook deliveries
// (a few per task: one per subscription and final event).
//
//	KEYS[1] task hash
//	ARGV[1] prefix, ARGV[2] id
//	returns 1; NOTFOUND, or CONFLICT if it is not finished or is pinned
var deleteTaskScript = script(luaKeys, luaMembers, luaWebhookKeys, `
local key, id = KEYS[1], ARGV[2]
local f = redis.call('HMGET', key, 'status', 'pinned', 'owner', 'seq')
if not f[1] then return redis.error_reply('NOTFOUND task') end
if f[1] ~= 'completed' and f[1] ~= 'failed' and f[1] ~= 'cancelled' then
  return redis.error_reply('CONFLICT task is ' .. f[1])
end
if f[2] == '1' then return redis.error_reply('CONFLICT task is pinned') end
local m = list_member(f[4], id)
for _, list in ipairs({'all', f[1]}) do
  redis.call('ZREM', key_list(list), m)
  if f[3] and f[3] ~= '' then redis.call('ZREM', key_owner_list(list, f[3]), m) end
end
redis.call('ZREM', key_retention_tasks(), id)
redis.call('DEL', key)
for _, did in ipairs(redis.call('ZRANGE', key_wh_task_deliveries(id), 0, -1)) do
  redis.call('ZREM', key_wh_due(), did)
  redis.call('DEL', key_wh_delivery(did))
end
for _, sid in ipairs(redis.call('SMEMBERS', key_wh_task_subs(id))) do
  redis.call('DEL', key_wh_sub(sid))
end
redis.call('DEL', key_wh_task_deliveries(id), key_wh_task_subs(id))
return 1
`)

// pinTaskScript pins or unpins a task: a pinned task, and its files, leave
// the retention ZSETs; unpinned, they come back (a finished task by its
// FinishedAt, each unpinned file by its CreatedAt).
//
//	KEYS[1] task hash
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] '1' pin, '0' unpin
//	returns the task as HGETALL pairs; NOTFOUND
var pinTaskScript = script(luaKeys, luaMembers, `
local key, id, pin = KEYS[1], ARGV[2], ARGV[3] == '1'
local f = redis.call('HMGET', key, 'status', 'finished')
if not f[1] then return redis.error_reply('NOTFOUND task') end
local files = redis.call('ZRANGE', key_task_files(id), 0, -1)
if pin then
  redis.call('HSET', key, 'pinned', '1')
  redis.call('ZREM', key_retention_tasks(), id)
  for _, fid in ipairs(files) do redis.call('ZREM', key_retention_files(), fid) end
else
  redis.call('HDEL', key, 'pinned')
  if f[1] == 'completed' or f[1] == 'failed' or f[1] == 'cancelled' then
    redis.call('ZADD', key_retention_tasks(), f[2], id)
  end
  for _, fid in ipairs(files) do
    local ff = redis.call('HMGET', key_file(fid), 'created', 'pinned')
    if ff[1] and ff[2] ~= '1' then redis.call('ZADD', key_retention_files(), ff[1], fid) end
  end
end
return redis.call('HGETALL', key)
`)

// pinFileScript pins or unpins a file record.
//
//	KEYS[1] file hash
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] '1' pin, '0' unpin
//	returns the file as HGETALL pairs; NOTFOUND
var pinFileScript = script(luaKeys, `
local key, id = KEYS[1], ARGV[2]
local f = redis.call('HMGET', key, 'created', 'task')
if not f[1] then return redis.error_reply('NOTFOUND file') end
if ARGV[3] == '1' then
  redis.call('HSET', key, 'pinned', '1')
  redis.call('ZREM', key_retention_files(), id)
else
  redis.call('HDEL', key, 'pinned')
  if not f[2] or f[2] == '' or redis.call('HGET', key_task(f[2]), 'pinned') ~= '1' then
    redis.call('ZADD', key_retention_files(), f[1], id)
  end
end
return redis.call('HGETALL', key)
`)

// TaskExpired returns the oldest finished, unpinned tasks finished before p.Before.
func (s *Store) TaskExpired(ctx context.Context, p *store.ExpiredParams) ([]string, error) {
	if err := s.retentionBackfill(ctx); err != nil {
		return nil, wrap(err, "list expired tasks")
	}
	ids, err := expiredScript.Run(ctx, s.rdb, nil, s.keys.prefix, "tasks", msArg(p.Before), store.ExpiredLimit(p.Limit)).StringSlice()
	return ids, wrap(err, "list expired tasks")
}

// FileExpired returns the oldest unpinned files created before p.Before.
func (s *Store) FileExpired(ctx context.Context, p *store.ExpiredParams) ([]string, error) {
	if err := s.retentionBackfill(ctx); err != nil {
		return nil, wrap(err, "list expired files")
	}
	ids, err := expiredScript.Run(ctx, s.rdb, nil, s.keys.prefix, "files", msArg(p.Before), store.ExpiredLimit(p.Limit)).StringSlice()
	return ids, wrap(err, "list expired files")
}

// retentionBackfill completes the retention backfill (backfillScript), one
// bounded script per step, unless this store saw it complete already.
func (s *Store) retentionBackfill(ctx context.Context) error {
	for !s.backfilled.Load() {
		done, err := s.retentionBackfillStep(ctx)
		if err != nil {
			return err
		}
		if done {
			s.backfilled.Store(true)
		}
	}
	return nil
}

// retentionBackfillStep takes one step of the backfill and reports whether
// it is complete.
func (s *Store) retentionBackfillStep(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	n, err := backfillScript.Run(ctx, s.rdb, nil, s.keys.prefix, s.backfillStep).Int()
	return n == 1, err
}

// TaskDelete deletes a finished, unpinned task.
func (s *Store) TaskDelete(ctx context.Context, id string) error {
	err := deleteTaskScript.Run(ctx, s.rdb, []string{s.keys.task(id)}, s.keys.prefix, id).Err()
	return wrap(err, "delete task %s", id)
}

// TaskPin pins or unpins a task.
func (s *Store) TaskPin(ctx context.Context, p *store.PinParams) (*task.Task, error) {
	reply, err := pinTaskScript.Run(ctx, s.rdb, []string{s.keys.task(p.ID)}, s.keys.prefix, p.ID, pinArg(p.Pinned)).Result()
	if err != nil {
		return nil, wrap(err, "pin task %s", p.ID)
	}
	m, err := pairs(reply)
	if err != nil {
		return nil, wrap(err, "pin task %s", p.ID)
	}
	t, err := decodeTask(m)
	return t, wrap(err, "pin task %s", p.ID)
}

// FilePin pins or unpins a file record.
func (s *Store) FilePin(ctx context.Context, p *store.PinParams) (*file.File, error) {
	reply, err := pinFileScript.Run(ctx, s.rdb, []string{s.keys.file(p.ID)}, s.keys.prefix, p.ID, pinArg(p.Pinned)).Result()
	if err != nil {
		return nil, wrap(err, "pin file %s", p.ID)
	}
	m, err := pairs(reply)
	if err != nil {
		return nil, wrap(err, "pin file %s", p.ID)
	}
	f, err := decodeFile(m)
	return f, wrap(err, "pin file %s", p.ID)
}

func pinArg(pinned bool) string {
	if pinned {
		return "1"
	}
	return "0"
}
