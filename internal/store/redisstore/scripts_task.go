package redisstore

import (
	"strings"

	"github.com/redis/go-redis/v9"
)

// The task scripts. Each one that names ARGV[1] "prefix" starts with the
// shared Lua builders (luaKeys, luaMembers, luaTaskIndexes) and reaches the
// keys it discovers through them. Every script checks before it writes.
// Task hash fields are listed in task.go.

// script joins Lua parts into one script.
func script(parts ...string) *redis.Script { return redis.NewScript(strings.Join(parts, "\n")) }

// luaTaskIndexes moves a task between the indexes of its status.
const luaTaskIndexes = `
-- relist moves the task at key from the list of status 'from' to the list
-- of status 'to', globally and in its owner's lists.
local function relist(key, id, from, to)
  local f = redis.call('HMGET', key, 'owner', 'created', 'seq')
  local m = list_member(f[3], id)
  redis.call('ZREM', key_list(from), m)
  redis.call('ZADD', key_list(to), f[2], m)
  if f[1] and f[1] ~= '' then
    redis.call('ZREM', key_owner_list(from, f[1]), m)
    redis.call('ZADD', key_owner_list(to, f[1]), f[2], m)
  end
end

-- raise_progress raises the progress of the task at key to p (a string),
-- capped at 99; it never lowers it.
local function raise_progress(key, p)
  local cur = tonumber(redis.call('HGET', key, 'progress')) or 0
  local want = math.min(tonumber(p) or 0, 99)
  if want > cur then redis.call('HSET', key, 'progress', want) end
end

-- owner_score is an owner's place in the queue owners: running count, then
-- the serial of its last claim (under 2^33, exact while running < 2^20).
local function owner_score(owner)
  local running = tonumber(redis.call('HGET', key_owner_running(), owner)) or 0
  local served = tonumber(redis.call('HGET', key_owner_served(), owner)) or 0
  return running * 8589934592 + served
end

-- count_running adds n to owner's running count and, while the owner has
-- tasks waiting, updates its score in the queue owners.
local function count_running(owner, n)
  if redis.call('HINCRBY', key_owner_running(), owner, n) <= 0 then
    redis.call('HDEL', key_owner_running(), owner)
  end
  if redis.call('ZSCORE', key_queue_owners(), owner) then
    redis.call('ZADD', key_queue_owners(), owner_score(owner), owner)
  end
end

-- enqueue adds queue member qm of the task at key to the queue, its
-- owner's queue, the owner's queue of its requirement (and of its model
-- within it), and the owner to the queue owners.
local function enqueue(key, qm)
  local f = redis.call('HMGET', key, 'owner', 'ck', 'cap')
  local owner, ck, cap = f[1] or '', f[2] or '', f[3] or ''
  redis.call('ZADD', key_queue(), 0, qm)
  redis.call('ZADD', key_owner_queue(owner), 0, qm)
  redis.call('ZADD', key_cap_queue(owner, cap), 0, qm)
  redis.call('SADD', key_owner_caps(owner), cap)
  if ck ~= '' then redis.call('ZADD', key_cap_ckpt_queue(owner, cap, ck), 0, qm) end
  if not redis.call('ZSCORE', key_queue_owners(), owner) then
    redis.call('ZADD', key_queue_owners(), owner_score(owner), owner)
  end
end

-- dequeue undoes enqueue; an owner with nothing left waiting leaves the
-- queue owners, a requirement with nothing left the owner's requirements.
local function dequeue(key, qm)
  local f = redis.call('HMGET', key, 'owner', 'ck', 'cap')
  local owner, ck, cap = f[1] or '', f[2] or '', f[3] or ''
  redis.call('ZREM', key_queue(), qm)
  redis.call('ZREM', key_owner_queue(owner), qm)
  redis.call('ZREM', key_cap_queue(owner, cap), qm)
  if redis.call('ZCARD', key_cap_queue(owner, cap)) == 0 then redis.call('SREM', key_owner_caps(owner), cap) end
  if ck ~= '' then redis.call('ZREM', key_cap_ckpt_queue(owner, cap, ck), qm) end
  if redis.call('ZCARD', key_owner_queue(owner)) == 0 then redis.call('ZREM', key_queue_owners(), owner) end
end

-- migrate_caps moves a store's pending tasks from the per-owner
-- checkpoint queues of stores before placement by capability to the
-- per-requirement queues, once: every task then has the requirement ''
-- (any instance). O(pending tasks), on the first claim after the upgrade.
local function migrate_caps()
  if redis.call('EXISTS', key_caps_version()) == 1 then return end
  for _, qm in ipairs(redis.call('ZRANGE', key_queue(), 0, -1)) do
    local key = key_task(queue_id(qm))
    local f = redis.call('HMGET', key, 'owner', 'ck')
    if f[2] and f[2] ~= '' then redis.call('DEL', key_ckpt_queue(f[1] or '', f[2])) end
    enqueue(key, qm)
  end
  redis.call('SET', key_caps_version(), '1')
end

-- leave_running drops a running task from the lease, instance and
-- running-count indexes.
local function leave_running(key, id)
  redis.call('ZREM', key_leases(), id)
  redis.call('SREM', key_running_on(redis.call('HGET', key, 'inst') or ''), id)
  count_running(redis.call('HGET', key, 'owner') or '', -1)
end

-- check_running answers an error reply unless the task at key is running
-- and, when owner is not empty, leased by owner; nil when it is.
local function check_running(key, owner)
  local f = redis.call('HMGET', key, 'status', 'lowner')
  if not f[1] then return redis.error_reply('NOTFOUND task') end
  if f[1] ~= 'running' then return redis.error_reply('CONFLICT task is ' .. f[1]) end
  if owner ~= '' and f[2] ~= owner then return redis.error_reply('CONFLICT lease held by another owner') end
  return nil
end
`

// luaInsert adds a pending task. It needs luaKeys, luaMembers,
// luaTaskIndexes, luaWebhookKeys, luaWebhookEnqueue and luaEventLog.
//
// insert_task(a, key, seqkey, log, counter) adds the task whose hash is key
// (seqkey the seq counter; log and counter the event log stream and event
// counter), unless its owner already has the most pending tasks allowed
// (the length of their queue), and, the first time its placement
// requirement is seen, the requirement and the instances able to run it.
// Its arguments are ARGV[a] on, through the last (insertArgs):
//
//	ARGV[a] id, ARGV[a+1] owner ('' none), ARGV[a+2] CreatedAt ms,
//	ARGV[a+3] queue member prefix (queueMemberPrefix), ARGV[a+4] most
//	pending tasks of the owner (0: no bound), ARGV[a+5] requirement key
//	('' none), ARGV[a+6] its data, ARGV[a+7] n, ARGV[a+8..a+7+n] the
//	instances able to run it, ARGV[a+8+n] e, ARGV[a+9+n] event channel,
//	ARGV[a+10+n] event log size, ARGV[a+11+n..a+10+n+7e] events to log with
//	their webhook events, seven arguments each (eventArgs), then hash
//	field, value pairs to the last (with owner, ck, the CheckpointKey, and
//	cap, the requirement key)
//	returns the task's Seq, or nil and an error reply: CONFLICT if the id
//	exists; LIMIT if the owner has ARGV[a+4] pending tasks
const luaInsert = `
local function insert_task(a, key, seqkey, log, counter)
  if redis.call('EXISTS', key) == 1 then return nil, redis.error_reply('CONFLICT task exists') end
  local id, owner, created, max = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 4])
  local capkey, n = ARGV[a + 5], tonumber(ARGV[a + 7])
  if max > 0 and redis.call('ZCARD', key_owner_queue(owner)) >= max then
    return nil, redis.error_reply('LIMIT owner has ' .. max .. ' pending tasks')
  end
  if capkey ~= '' and redis.call('EXISTS', key_cap(capkey)) == 0 then
    redis.call('HSET', key_cap(capkey), 'data', ARGV[a + 6], 'created', created)
    redis.call('SADD', key_caps(), capkey)
    for i = a + 8, a + 7 + n do
      redis.call('SADD', key_cap_on(capkey), ARGV[i])
      redis.call('SADD', key_capable(ARGV[i]), capkey)
    end
  end
  local ev = a + 8 + n
  local e = tonumber(ARGV[ev])
  local seq = redis.call('INCR', seqkey)
  local qm = queue_member(ARGV[a + 3], seq, id)
  redis.call('HSET', key, 'seq', string.format('%d', seq), 'qm', qm, unpack(ARGV, ev + 3 + 7 * e))
  enqueue(key, qm)
  local m = list_member(seq, id)
  for _, list in ipairs({'all', 'pending'}) do
    redis.call('ZADD', key_list(list), created, m)
    if owner ~= '' then redis.call('ZADD', key_owner_list(list, owner), created, m) end
  end
  log_events(ev + 3, e, log, counter, ARGV[ev + 1], ARGV[ev + 2])
  return seq
end
`

// insertTaskScript adds a pending task (luaInsert).
//
//	KEYS[1] task hash, KEYS[2] seq counter, KEYS[3] event log stream,
//	KEYS[4] event counter
//	ARGV[1] prefix, ARGV[2..] insert_task's arguments (a = 2)
//	returns the task's Seq; CONFLICT if the id exists; LIMIT if the owner
//	has too many pending tasks
var insertTaskScript = script(luaKeys, luaMembers, luaTaskIndexes, luaWebhookKeys, luaWebhookEnqueue, luaEventLog, luaInsert, `
local seq, err = insert_task(2, KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if err then return err end
return seq
`)

// luaClaim takes the next task (store.TaskClaim) that the instance can run,
// marks it running, and logs the claim's events with their webhook
// deliveries. It needs what luaInsert needs.
//
// Capability: of each owner, only the requirements in its requirement set
// that are empty or in the instance's capable set count. Fair share: the
// first of the queue owners (lowest score, then name) with such a
// requirement gives the head, the lowest member over the heads of those
// requirements' queues. Warm model: the lowest member over the same
// requirements' queues for the instance's model replaces it when its rank
// is within the window. O(log n) per runnable requirement of the owner
// served, plus the owners passed over.
//
// The events are store.ClaimEvents': the instance_status is the data Go
// encoded (claimArgv) with the task's id put in, the task_status is
// log_final_events' (running). Conformance tests check that they equal
// store.ClaimEvents'.
//
// claim_task(a, log, counter) reads its arguments from ARGV[a] on (claimArgv):
//
//	ARGV[a] instance id, ARGV[a+1] lease owner, ARGV[a+2] now ms,
//	ARGV[a+3] lease expiry ms, ARGV[a+4] the instance's CheckpointKey
//	('' none), ARGV[a+5] warm window ms (0 off), ARGV[a+6] '1' to log the
//	task's task_status, ARGV[a+7] and ARGV[a+8] the data of the instance's
//	instance_status before and after the task's id ('' and '': none),
//	ARGV[a+9] event channel, ARGV[a+10] event log size, ARGV[a+11] the
//	webhook timestamp of now (store.WebhookTimestamp)
//	returns the claimed task's key, or nil and an error reply: NOTFOUND if
//	nothing is pending, NOTFOUND NONE_RUNNABLE if nothing pending can run
//	there
const luaClaim = `
local none_runnable = '` + reasonNoneRunnable + `'
local function claim_task(a, log, counter)
  migrate_caps()
  local inst = ARGV[a]
  local first, head, runnable
  for _, owner in ipairs(redis.call('ZRANGE', key_queue_owners(), 0, -1)) do
    local caps = {}
    for _, cap in ipairs(redis.call('SMEMBERS', key_owner_caps(owner))) do
      if cap == '' or redis.call('SISMEMBER', key_capable(inst), cap) == 1 then
        local h = redis.call('ZRANGE', key_cap_queue(owner, cap), 0, 0)[1]
        if h then
          caps[#caps + 1] = cap
          if not head or h < head then head = h end
        end
      end
    end
    if head then
      first, runnable = owner, caps
      break
    end
  end
  if not head then
    if redis.call('ZCARD', key_queue()) > 0 then return nil, redis.error_reply('NOTFOUND ' .. none_runnable) end
    return nil, redis.error_reply('NOTFOUND no pending task')
  end
  if redis.call('HGET', key_instance(inst), 'enabled') == '0' then
    return nil, redis.error_reply('NOTFOUND ' .. none_runnable) -- disabled: it claims nothing
  end
  local pick, ck, window = head, ARGV[a + 4], tonumber(ARGV[a + 5])
  if ck ~= '' and window > 0 and redis.call('HGET', key_task(queue_id(head)), 'ck') ~= ck then
    local warm
    for _, cap in ipairs(runnable) do
      local w = redis.call('ZRANGE', key_cap_ckpt_queue(first, cap, ck), 0, 0)[1]
      if w and (not warm or w < warm) then warm = w end
    end
    if warm and string.sub(warm, 1, 16) <= rank_plus(head, window) then pick = warm end
  end
  local id = queue_id(pick)
  local key = key_task(id)
  local owner = redis.call('HGET', key, 'owner') or ''
  local now, lexp = ARGV[a + 2], ARGV[a + 3]
  redis.call('HSET', key_owner_served(), owner, redis.call('INCR', key_served_serial()))
  dequeue(key, pick)
  redis.call('HSET', key, 'status', 'running', 'inst', inst, 'lowner', ARGV[a + 1], 'lexp', lexp,
    'started', now, 'updated', now)
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('ZADD', key_leases(), lexp, id)
  redis.call('SADD', key_running_on(inst), id)
  count_running(owner, 1)
  relist(key, id, 'pending', 'running')
  local channel, size = ARGV[a + 9], ARGV[a + 10]
  if ARGV[a + 7] ~= '' then
    log_msg(log, counter, channel, size, '"t":"instance_status","o":' .. cjson.encode(owner) .. ',"ts":' .. now ..
      '}\n' .. ARGV[a + 7] .. cjson.encode(id) .. ARGV[a + 8])
  end
  if ARGV[a + 6] == '1' and log_final_events(key, id, 'running', now, ARGV[a + 11], log, counter, channel, size) > 0 then
    log_wake(log, counter, channel, size, now)
  end
  return key
end
`

// claimTaskScript claims a task (luaClaim).
//
//	KEYS[1] queue (the scripts reach the other queue keys through the
//	prefix), KEYS[2] event log stream, KEYS[3] event counter
//	ARGV[1] prefix, ARGV[2..13] claim_task's arguments (a = 2)
//	returns the claimed task as HGETALL pairs; NOTFOUND if nothing is
//	pending, NOTFOUND NONE_RUNNABLE if nothing pending can run there
var claimTaskScript = script(luaKeys, luaMembers, luaTaskIndexes, luaWebhookKeys, luaWebhookEnqueue, luaEventLog, luaClaim, `
local key, err = claim_task(2, KEYS[2], KEYS[3])
if err then return err end
return redis.call('HGETALL', key)
`)

// insertClaimTaskScript adds a pending task (luaInsert), then claims one
// (luaClaim): store.TaskInsertClaim. A refused insert claims nothing.
//
//	KEYS[1] task hash, KEYS[2] seq counter, KEYS[3] event log stream,
//	KEYS[4] event counter, KEYS[5] queue
//	ARGV[1] prefix, ARGV[2..13] claim_task's arguments (a = 2), ARGV[14..]
//	insert_task's (a = 14)
//	returns {Seq, the claimed task as HGETALL pairs}, or {Seq} when
//	nothing could be claimed; the insert's errors
var insertClaimTaskScript = script(luaKeys, luaMembers, luaTaskIndexes, luaWebhookKeys, luaWebhookEnqueue, luaEventLog,
	luaInsert, luaClaim, `
local seq, err = insert_task(14, KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if err then return err end
local key = claim_task(2, KEYS[3], KEYS[4])
if not key then return {seq} end
return {seq, redis.call('HGETALL', key)}
`)

// progressTaskScript raises a running task's progress, capped at 99.
//
//	KEYS[1] task hash
//	ARGV[1] prefix, ARGV[2] progress, ARGV[3] now ms
//	returns 1; NOTFOUND, or CONFLICT if the task is not running
var progressTaskScript = script(luaKeys, luaMembers, luaTaskIndexes, `
local err = check_running(KEYS[1], '')
if err then return err end
raise_progress(KEYS[1], ARGV[2])
redis.call('HSET', KEYS[1], 'updated', ARGV[3])
return 1
`)

// renewLeaseScript extends a running task's lease, or takes it over. UpdatedAt stays.
//
//	KEYS[1] task hash
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] lease owner, ARGV[4] new expiry ms,
//	ARGV[5] '1' to take the lease over from any owner
//	returns 1; NOTFOUND, or CONFLICT if not running or (without takeover)
//	leased by another owner
var renewLeaseScript = script(luaKeys, luaMembers, luaTaskIndexes, `
if ARGV[3] == '' then return redis.error_reply('CONFLICT no lease owner given') end
local owner = ARGV[3]
if ARGV[5] == '1' then owner = '' end
local err = check_running(KEYS[1], owner)
if err then return err end
redis.call('HSET', KEYS[1], 'lexp', ARGV[4], 'lowner', ARGV[3])
redis.call('ZADD', key_leases(), ARGV[4], ARGV[2])
return 1
`)

// finishTaskScript moves a task to a final status.
//
//	KEYS[1] task hash
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] final status, ARGV[4] now ms,
//	ARGV[5] lease owner ('' any), ARGV[6] result JSON ('' none),
//	ARGV[7] error JSON ('' none), ARGV[8] the run's progress (raises the
//	stored one, capped at 99, unless completed: 100), ARGV[9] the event
//	channel, ARGV[10] the event log's size, ARGV[11] the webhook
//	timestamp of now (store.WebhookTimestamp), ARGV[12..] statuses the
//	task may be in
//	KEYS[2] event log stream, KEYS[3] event counter
//	returns the task as HGETALL pairs; NOTFOUND, or CONFLICT if the task is
//	in no allowed status or leased by another owner
//
// It logs and publishes the task's final events and queues their webhook
// deliveries (luaEventLog) in the same step.
var finishTaskScript = script(luaKeys, luaMembers, luaTaskIndexes, luaWebhookKeys, luaWebhookEnqueue, luaEventLog, `
local key, id, to, now = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
local f = redis.call('HMGET', key, 'status', 'lowner', 'qm')
local from = f[1]
if not from then return redis.error_reply('NOTFOUND task') end
local allowed = false
for i = 12, #ARGV do
  if ARGV[i] == from then allowed = true end
end
if not allowed then return redis.error_reply('CONFLICT task is ' .. from) end
if ARGV[5] ~= '' and f[2] ~= ARGV[5] then return redis.error_reply('CONFLICT lease held by another owner') end
if from == 'pending' then dequeue(key, f[3]) end
if from == 'running' then leave_running(key, id) end
redis.call('HSET', key, 'status', to, 'finished', now, 'updated', now, 'lowner', '', 'lexp', '0')
redis.call('HDEL', key, 'qm')
if to == 'completed' then redis.call('HSET', key, 'progress', 100) else raise_progress(key, ARGV[8]) end
for i, field in ipairs({'result', 'error'}) do
  local v = ARGV[5 + i]
  if v ~= '' then redis.call('HSET', key, field, v) else redis.call('HDEL', key, field) end
end
relist(key, id, from, to)
if redis.call('HGET', key, 'pinned') ~= '1' then redis.call('ZADD', key_retention_tasks(), now, id) end
if log_final_events(key, id, to, now, ARGV[11], KEYS[2], KEYS[3], ARGV[9], ARGV[10]) > 0 then
  log_wake(KEYS[2], KEYS[3], ARGV[9], ARGV[10], now)
end
return redis.call('HGETALL', key)
`)

// luaEventLog numbers, logs and publishes events, and queues the webhook
// deliveries of the task events among them in the same script (it needs
// luaWebhookKeys and luaWebhookEnqueue): a task event nobody subscribed to
// costs an EXISTS or two. A message is the header of encodeEvent with the
// number put first, a newline, and the data. Besides the events Go gives
// (log_events), it builds the task events of event.Final and the
// task_status of event.Pending (log_final_events): the data of
// event.TaskStatusData, then of event.TaskCompletedData, TaskFailedData or
// TaskCancelledData. Conformance tests check that they equal event.Final's,
// and that their deliveries carry what store.WebhookEventOf makes of them.
const luaEventLog = `
-- log_msg numbers, logs and publishes one message; rest is the message
-- after its opening brace, without the number.
local function log_msg(log, counter, channel, size, rest)
  local seq = redis.call('INCR', counter)
  local msg = '{"s":' .. seq .. ',' .. rest
  redis.call('XADD', log, 'MAXLEN', '~', size, '0-' .. seq, 'm', msg)
  redis.call('PUBLISH', channel, msg)
end
local function log_event(log, counter, channel, size, typ, id, owner, now, data)
  log_msg(log, counter, channel, size, '"t":"' .. typ .. '","k":' .. cjson.encode(id) ..
    ',"o":' .. cjson.encode(owner) .. ',"ts":' .. now .. '}\n' .. data)
end
-- log_wake logs and publishes webhook_queued, which wakes the deliverers:
-- no task, owner or data.
local function log_wake(log, counter, channel, size, now)
  log_msg(log, counter, channel, size, '"t":"webhook_queued","ts":' .. now .. ',"n":true}\n')
end
-- log_events logs the e events whose arguments start at ARGV[first],
-- seven each (eventArgs): the message, then its webhook event (id, '' for
-- none; type, task, owner, payload, time ms), whose deliveries it queues;
-- then webhook_queued if it queued any.
local function log_events(first, e, log, counter, channel, size)
  local queued, at, subs = 0, '0', {}
  for i = first, first + 7 * (e - 1), 7 do
    log_msg(log, counter, channel, size, string.sub(ARGV[i], 2))
    if ARGV[i + 1] ~= '' then
      local task, owner = ARGV[i + 3], ARGV[i + 4]
      local who = #task .. ':' .. task .. owner
      if subs[who] == nil then subs[who] = wh_any(task, owner) end
      if subs[who] then
        local n = wh_enqueue(ARGV[i + 1], ARGV[i + 2], task, owner, ARGV[i + 5], ARGV[i + 6])
        if n > 0 then queued, at = queued + n, ARGV[i + 6] end
      end
    end
  end
  if queued > 0 then log_wake(log, counter, channel, size, at) end
end
-- wh_task_event queues the deliveries of a webhook event of task id whose
-- status (pending, running or final) is status: its id adds suffix to
-- the status, its payload is store.WebhookEventOf's, with data and ts (the
-- event's time, store.WebhookTimestamp). Returns how many it queued.
local function wh_task_event(id, owner, status, suffix, data, now, ts)
  local payload = '{"type":"task.' .. status .. '","timestamp":"' .. ts .. '","data":' .. data .. '}'
  return wh_enqueue('evt_' .. id .. '_' .. status .. suffix, 'task.' .. status, id, owner, payload, now)
end
-- log_final_events logs the task_status of the task at key, which just
-- became 'to', then its final event if 'to' is final, all stamped now,
-- and queues their webhook deliveries; it returns how many it queued
-- (the caller logs webhook_queued when there are some).
local function log_final_events(key, id, to, now, ts, log, counter, channel, size)
  local f = redis.call('HMGET', key, 'owner', 'inst', 'progress', 'attempts', 'result', 'error')
  local owner, inst = f[1] or '', f[2] or ''
  local jid, jinst = cjson.encode(id), cjson.encode(inst)
  local attempts = tonumber(f[4]) or 0
  local status = '{"taskId":' .. jid .. ',"status":"' .. to .. '","instanceId":' .. jinst ..
    ',"progress":' .. (tonumber(f[3]) or 0) .. ',"attempts":' .. attempts .. '}'
  log_event(log, counter, channel, size, 'task_status', id, owner, now, status)
  local hooked, queued = wh_any(id, owner), 0
  if hooked and (to == 'pending' or to == 'running') then
    queued = wh_task_event(id, owner, to, '.' .. attempts, status, now, ts)
  end
  local typ, data
  if to == 'completed' then
    typ, data = 'task_completed', '{"taskId":' .. jid .. ',"instanceId":' .. jinst .. ',"result":' .. (f[5] or 'null') .. '}'
  elseif to == 'failed' then
    typ, data = 'task_failed', '{"taskId":' .. jid .. ',"instanceId":' .. jinst .. ',"error":' .. (f[6] or 'null') .. '}'
  elseif to == 'cancelled' then
    typ = 'task_cancelled'
    if inst == '' then data = '{"taskId":' .. jid .. '}'
    else data = '{"taskId":' .. jid .. ',"instanceId":' .. jinst .. '}' end
  else
    return queued
  end
  log_event(log, counter, channel, size, typ, id, owner, now, data)
  if hooked then
    queued = queued + wh_task_event(id, owner, to, '', string.sub(data, 1, -2) .. ',"status":"' .. to .. '"}', now, ts)
  end
  return queued
end
`

// requeueTaskScript returns a running task to the queue at its old place
// (its queue member, hence its Seq, is kept).
//
//	KEYS[1] task hash, KEYS[2] event log stream, KEYS[3] event counter
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] lease owner ('' any), ARGV[4] now ms,
//	ARGV[5] '1' to take back the attempt the claim counted, ARGV[6] the
//	run's progress (raises the stored one, capped at 99), ARGV[7] '1' to
//	log the task's task_status and task_queued and queue the webhook
//	deliveries of the first (luaEventLog), ARGV[8] event channel, ARGV[9]
//	event log size, ARGV[10] the webhook timestamp of now
//	returns the task as HGETALL pairs; NOTFOUND, or CONFLICT if not running
//	or leased by another owner
var requeueTaskScript = script(luaKeys, luaMembers, luaTaskIndexes, luaWebhookKeys, luaWebhookEnqueue, luaEventLog, `
local key, id = KEYS[1], ARGV[2]
local err = check_running(key, ARGV[3])
if err then return err end
leave_running(key, id)
redis.call('HSET', key, 'status', 'pending', 'inst', '', 'lowner', '', 'lexp', '0', 'started', '0',
  'updated', ARGV[4])
if ARGV[5] == '1' and (tonumber(redis.call('HGET', key, 'attempts')) or 0) > 0 then
  redis.call('HINCRBY', key, 'attempts', -1)
end
raise_progress(key, ARGV[6])
enqueue(key, redis.call('HGET', key, 'qm'))
relist(key, id, 'running', 'pending')
if ARGV[7] == '1' then
  local queued = log_final_events(key, id, 'pending', ARGV[4], ARGV[10], KEYS[2], KEYS[3], ARGV[8], ARGV[9])
  log_event(KEYS[2], KEYS[3], ARGV[8], ARGV[9], 'task_queued', id, redis.call('HGET', key, 'owner') or '', ARGV[4],
    '{"taskId":' .. cjson.encode(id) .. ',"status":"pending"}')
  if queued > 0 then log_wake(KEYS[2], KEYS[3], ARGV[8], ARGV[9], ARGV[4]) end
end
return redis.call('HGETALL', key)
`)

// cancelTaskScript cancels a pending task or flags a running one.
//
//	KEYS[1] task hash, KEYS[2] event log stream, KEYS[3] event counter
//	ARGV[1] prefix, ARGV[2] id, ARGV[3] now ms, ARGV[4] '1' to log the
//	cancel's events (a pending task's final events, with their webhook
//	deliveries; a running task's task_cancel_requested), ARGV[5] event
//	channel, ARGV[6] event log size, ARGV[7] the webhook timestamp of now
//	returns the task as HGETALL pairs; NOTFOUND, or CONFLICT if it is final
var cancelTaskScript = script(luaKeys, luaMembers, luaTaskIndexes, luaWebhookKeys, luaWebhookEnqueue, luaEventLog, `
local key, id, now = KEYS[1], ARGV[2], ARGV[3]
local st = redis.call('HGET', key, 'status')
if not st then return redis.error_reply('NOTFOUND task') end
if st == 'pending' then
  dequeue(key, redis.call('HGET', key, 'qm'))
  redis.call('HSET', key, 'status', 'cancelled', 'finished', now, 'updated', now)
  redis.call('HDEL', key, 'qm')
  relist(key, id, 'pending', 'cancelled')
  if redis.call('HGET', key, 'pinned') ~= '1' then redis.call('ZADD', key_retention_tasks(), now, id) end
  if ARGV[4] == '1' and log_final_events(key, id, 'cancelled', now, ARGV[7], KEYS[2], KEYS[3], ARGV[5], ARGV[6]) > 0 then
    log_wake(KEYS[2], KEYS[3], ARGV[5], ARGV[6], now)
  end
elseif st == 'running' then
  redis.call('HSET', key, 'cancel', '1', 'updated', now)
  if ARGV[4] == '1' then
    local f = redis.call('HMGET', key, 'owner', 'inst')
    local data = '{"taskId":' .. cjson.encode(id)
    if (f[2] or '') ~= '' then data = data .. ',"instanceId":' .. cjson.encode(f[2]) end
    log_event(KEYS[2], KEYS[3], ARGV[5], ARGV[6], 'task_cancel_requested', id, f[1] or '', now, data .. '}')
  end
else
  return redis.error_reply('CONFLICT task is ' .. st)
end
return redis.call('HGETALL', key)
`)

// queueHeadScript lists the head of the queue: O(log n + limit).
//
//	KEYS[1] queue; ARGV[1] key prefix, ARGV[2] how many
//	returns id, cap key, id, cap key... from the head
var queueHeadScript = script(luaKeys, luaMembers, `
local out = {}
for _, qm in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local id = queue_id(qm)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', key_task(id), 'cap') or ''
end
return out
`)

// queuePositionScript reads a pending task's rank in claim order: O(log n).
//
//	KEYS[1] task hash, KEYS[2] queue
//	returns the 1-based position; NOTFOUND, or CONFLICT if not pending
var queuePositionScript = script(`
local f = redis.call('HMGET', KEYS[1], 'status', 'qm')
if not f[1] then return redis.error_reply('NOTFOUND task') end
if f[1] ~= 'pending' then return redis.error_reply('CONFLICT task is ' .. f[1]) end
return redis.call('ZRANK', KEYS[2], f[2]) + 1
`)
