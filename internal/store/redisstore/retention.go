package redisstore

import (
	"context"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// luaRetentionBackfill fills the retention ZSETs with the records stored
// before they existed, once per store (retention:v marks it done): every
// finished, unpinned task, and every unpinned file whose task is not
// pinned. It reads every task and file once, in the first prune's script.
const luaRetentionBackfill = `
local function retention_backfill()
  if redis.call('EXISTS', key_retention_version()) == 1 then return end
  for _, st in ipairs({'completed', 'failed', 'cancelled'}) do
    for _, m in ipairs(redis.call('ZRANGE', key_list(st), 0, -1)) do
      local id = list_id(m)
      local f = redis.call('HMGET', key_task(id), 'finished', 'pinned')
      if f[1] and f[2] ~= '1' then redis.call('ZADD', key_retention_tasks(), f[1], id) end
    end
  end
  for _, id in ipairs(redis.call('ZRANGE', key_files(), 0, -1)) do
    local f = redis.call('HMGET', key_file(id), 'created', 'pinned', 'task')
    if f[1] and f[2] ~= '1' and (not f[3] or f[3] == '' or redis.call('HGET', key_task(f[3]), 'pinned') ~= '1') then
      redis.call('ZADD', key_retention_files(), f[1], id)
    end
  end
  redis.call('SET', key_retention_version(), '1')
end
`

// expiredScript returns the oldest members of a retention ZSET scored
// below a time.
//
//	ARGV[1] prefix, ARGV[2] 'tasks' or 'files', ARGV[3] before (ms,
//	exclusive), ARGV[4] limit
//	returns the ids, oldest first
var expiredScript = script(luaKeys, luaMembers, luaRetentionBackfill, `
retention_backfill()
local key = key_retention_tasks()
if ARGV[2] == 'files' then key = key_retention_files() end
return redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
`)

// deleteTaskScript deletes a finished, unpinned task and its index entries.
//
//	KEYS[1] task hash
//	ARGV[1] prefix, ARGV[2] id
//	returns 1; NOTFOUND, or CONFLICT if it is not finished or is pinned
var deleteTaskScript = script(luaKeys, luaMembers, `
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
	ids, err := expiredScript.Run(ctx, s.rdb, nil, s.keys.prefix, "tasks", msArg(p.Before), store.ExpiredLimit(p.Limit)).StringSlice()
	return ids, wrap(err, "list expired tasks")
}

// FileExpired returns the oldest unpinned files created before p.Before.
func (s *Store) FileExpired(ctx context.Context, p *store.ExpiredParams) ([]string, error) {
	ids, err := expiredScript.Run(ctx, s.rdb, nil, s.keys.prefix, "files", msArg(p.Before), store.ExpiredLimit(p.Limit)).StringSlice()
	return ids, wrap(err, "list expired files")
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
