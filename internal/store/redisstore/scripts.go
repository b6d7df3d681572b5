package redisstore

// The instance, file and lease scripts. Like the task scripts, each checks
// before it writes.

// updateInstanceScript creates an instance with defaults (enabled, not
// alive) when missing, then sets only the fields given, so writers of
// different fields never overwrite each other.
//
//	KEYS[1] instance hash, KEYS[2] instances set
//	ARGV[1] id, ARGV[2..] field, value pairs to set
//	returns the instance as HGETALL pairs
var updateInstanceScript = script(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'enabled', '1', 'alive', '0', 'busy', '0', 'task', '',
    'heartbeat', '0', 'lasterr', '', 'queue', '0', 'failures', '0', 'device', '{}', 'ckpt', '')
end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
`)

// putCatalogScript stores a catalogue unless its hash is stored already.
//
//	KEYS[1] catalogue hash
//	ARGV[1] data, ARGV[2] CreatedAt ms
//	returns 1 when stored, 0 when the hash was there (nothing changes)
var putCatalogScript = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'created', ARGV[2]) -- fcData, fcCreated
return 1
`)

// deleteInstanceScript forgets an instance.
//
//	KEYS[1] instance hash, KEYS[2] instances set
//	ARGV[1] id
//	returns 1; NOTFOUND if it was never stored
var deleteInstanceScript = script(`
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if n == 0 then return redis.error_reply('NOTFOUND instance') end
return 1
`)

// listInstancesScript reads every instance.
//
//	KEYS[1] instances set
//	ARGV[1] prefix
//	returns {HGETALL pairs of instance 1, instance 2, ...} in no order
var listInstancesScript = script(luaKeys, `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local st = redis.call('HGETALL', key_instance(id))
  if #st > 0 then out[#out + 1] = st end
end
return out
`)

// insertFileScript adds a file record to its hash and its indexes, and its
// size to its owner's stored bytes once those are counted.
//
//	KEYS[1] file hash, KEYS[2] files ZSET, KEYS[3] owner's files ZSET,
//	KEYS[4] task's files ZSET, KEYS[5] stored bytes hash, KEYS[6] the
//	retention ZSET of files, KEYS[7] the task's hash (it may be pinned)
//	ARGV[1] id, ARGV[2] CreatedAt ms, ARGV[3] owner ('' none), ARGV[4] task id
//	('' none), ARGV[5] size, ARGV[6..] hash field, value pairs
//	returns 1; CONFLICT if the id exists
var insertFileScript = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('CONFLICT file exists') end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'pinned') ~= '1' and
   (ARGV[4] == '' or redis.call('HGET', KEYS[7], 'pinned') ~= '1') then
  redis.call('ZADD', KEYS[6], ARGV[2], ARGV[1])
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  if redis.call('HEXISTS', KEYS[5], ARGV[3]) == 1 then redis.call('HINCRBY', KEYS[5], ARGV[3], ARGV[5]) end
end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end
return 1
`)

// deleteFileScript removes a file record and its index entries, and its
// size from its owner's stored bytes once those are counted.
//
//	KEYS[1] file hash
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] '1' to refuse a pinned file or a
//	file of a pinned task (retention)
//	returns 1; NOTFOUND if there is no such record, CONFLICT if refused
var deleteFileScript = script(luaKeys, `
local f = redis.call('HMGET', KEYS[1], 'owner', 'task', 'size', 'pinned')
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 and (f[4] == '1' or
    (f[2] and f[2] ~= '' and redis.call('HGET', key_task(f[2]), 'pinned') == '1')) then
  return redis.error_reply('CONFLICT the file or its task is pinned')
end
if redis.call('DEL', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND file') end
local id = ARGV[2]
redis.call('ZREM', key_files(), id)
redis.call('ZREM', key_retention_files(), id)
if f[1] and f[1] ~= '' then
  redis.call('ZREM', key_owner_files(f[1]), id)
  if redis.call('HEXISTS', key_file_bytes(), f[1]) == 1 then
    redis.call('HINCRBY', key_file_bytes(), f[1], -(tonumber(f[3]) or 0))
  end
end
if f[2] and f[2] ~= '' then redis.call('ZREM', key_task_files(f[2]), id) end
return 1
`)

// usageScript reads an owner's pending tasks and stored bytes. The first
// read of an owner's bytes sums the sizes of their files (once per owner:
// files stored before the count existed are counted too); the file scripts
// keep the sum from then on.
//
//	KEYS[1] owner's queue ZSET, KEYS[2] stored bytes hash, KEYS[3] owner's
//	files ZSET
//	ARGV[1] prefix, ARGV[2] owner
//	returns {pending, stored bytes}
var usageScript = script(luaKeys, `
local bytes = redis.call('HGET', KEYS[2], ARGV[2])
if not bytes then
  bytes = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    bytes = bytes + (tonumber(redis.call('HGET', key_file(id), 'size')) or 0)
  end
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], string.format('%d', bytes)) end
end
return {redis.call('ZCARD', KEYS[1]), tonumber(bytes)}
`)

// listFilesScript reads one newest-first page of files. With a task the
// task's files (a task's outputs: few) are filtered by owner; otherwise
// the page is one ZREVRANGE of the owner's files or of all files.
//
//	KEYS[1] the ZSET to page (task's, owner's or all files)
//	ARGV[1] prefix, ARGV[2] offset, ARGV[3] limit, ARGV[4] owner to keep
//	('' any; only used with a task's ZSET)
//	returns {total, {HGETALL pairs of file 1}, {file 2}, ...}
var listFilesScript = script(luaKeys, `
local offset, limit, owner = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local ids, total
if owner == '' then
  total = redis.call('ZCARD', KEYS[1])
  ids = redis.call('ZREVRANGE', KEYS[1], offset, offset + limit - 1)
else
  local kept = {}
  for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do
    if redis.call('HGET', key_file(id), 'owner') == owner then kept[#kept + 1] = id end
  end
  total, ids = #kept, {}
  for i = offset + 1, math.min(offset + limit, #kept) do ids[#ids + 1] = kept[i] end
end
local out = {total}
for _, id in ipairs(ids) do out[#out + 1] = redis.call('HGETALL', key_file(id)) end
return out
`)

// acquireLeaseScript takes a named lease if it is free, expired (at or
// before now) or held by the caller, judged by the caller's clock.
//
//	KEYS[1] lease hash
//	ARGV[1] holder, ARGV[2] now ms, ARGV[3] expiry ms, ARGV[4] TTL of the
//	key in ms (garbage collection only; longer than the lease)
//	returns 1 if the holder now holds the lease, 0 if someone else does
var acquireLeaseScript = script(`
local cur = redis.call('HMGET', KEYS[1], 'holder', 'exp')
if cur[1] and cur[1] ~= ARGV[1] and tonumber(cur[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'exp', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// releaseLeaseScript gives a lease up if the holder holds it.
//
//	KEYS[1] lease hash
//	ARGV[1] holder
//	returns 1 if released, 0 otherwise
var releaseLeaseScript = script(`
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`)
