package redisstore

// defaultDeepOffset is the offset from which a list page over several
// statuses selects its first entry by binary search instead of merging
// everything before it, so a deep page never makes Redis sort a million
// entries while every other client waits.
const defaultDeepOffset = 1000

// luaListPage reads pages of the newest-first union of the list ZSETs in
// KEYS. Entries are {m = member, score = CreatedAt ms, seq = Seq}.
const luaListPage = `
-- entries reads the first n entries of list k scored at most max (newest first).
local function entries(k, max, n, out)
  local r = redis.call('ZREVRANGEBYSCORE', k, max, '-inf', 'WITHSCORES', 'LIMIT', 0, n)
  for i = 1, #r, 2 do
    out[#out + 1] = {m = r[i], score = tonumber(r[i + 1]), seq = tonumber(string.sub(r[i], 1, 16), 16)}
  end
end

-- merged_page sorts the first skip+limit entries at or below max of every
-- list and returns the members from skip+1 to skip+limit.
local function merged_page(max, skip, limit)
  local all = {}
  for _, k in ipairs(KEYS) do entries(k, max, skip + limit, all) end
  table.sort(all, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.seq > b.seq
  end)
  local page = {}
  for i = skip + 1, math.min(skip + limit, #all) do page[#page + 1] = all[i].m end
  return page
end

-- count_newer counts the entries of every list scored above t.
local function count_newer(t)
  local n = 0
  for _, k in ipairs(KEYS) do n = n + redis.call('ZCOUNT', k, '(' .. t, '+inf') end
  return n
end

-- score_bounds returns the lowest and the highest score of every list.
local function score_bounds()
  local lo, hi
  for _, k in ipairs(KEYS) do
    local first, last = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES'), redis.call('ZREVRANGE', k, 0, 0, 'WITHSCORES')
    if #first > 0 then
      lo = math.min(lo or tonumber(first[2]), tonumber(first[2]))
      hi = math.max(hi or tonumber(last[2]), tonumber(last[2]))
    end
  end
  return lo, hi
end

-- deep_page finds by binary search the score t of the entry at rank offset
-- (the lowest t with at most offset entries newer than it; scores are whole
-- milliseconds), then merges from t: the work is the search plus the
-- entries that share t's millisecond, not the offset.
local function deep_page(offset, limit)
  local a, b = score_bounds()
  while a < b do
    local mid = math.floor((a + b) / 2)
    if count_newer(mid) <= offset then b = mid else a = mid + 1 end
  end
  return merged_page(a, offset - count_newer(a), limit)
end
`

// listTasksScript reads one newest-first page over one or more list ZSETs
// (CreatedAt, then Seq, descending). One list is one ZREVRANGE: O(log n +
// limit). Several are merged from the first offset+limit entries of each
// below ARGV[4], and from a binary-searched start beyond it.
//
//	KEYS list ZSETs (at least one)
//	ARGV[1] prefix, ARGV[2] offset, ARGV[3] limit, ARGV[4] deep offset,
//	ARGV[5..] task fields to read
//	returns {total, {values of the fields of item 1}, {item 2}, ...}
var listTasksScript = script(luaKeys, luaMembers, luaListPage, `
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local total = 0
for _, k in ipairs(KEYS) do total = total + redis.call('ZCARD', k) end
local page = {}
if #KEYS == 1 then
  page = redis.call('ZREVRANGE', KEYS[1], offset, offset + limit - 1)
elseif offset < tonumber(ARGV[4]) then
  page = merged_page('+inf', offset, limit)
elseif offset < total then
  page = deep_page(offset, limit)
end
local out = {total}
for _, m in ipairs(page) do
  out[#out + 1] = redis.call('HMGET', key_task(list_id(m)), unpack(ARGV, 5))
end
return out
`)

// listRunningScript reads running tasks, by lease expiry or instance.
//
//	KEYS[1] leases ZSET
//	ARGV[1] prefix, ARGV[2] instance id ('' any), ARGV[3] lease expired before ms ('' any)
//	returns {HGETALL pairs of task 1, task 2, ...}
var listRunningScript = script(luaKeys, `
local inst, before = ARGV[2], ARGV[3]
local ids
if before ~= '' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. before)
elseif inst ~= '' then
  ids = redis.call('SMEMBERS', key_running_on(inst))
else
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
end
local out = {}
for _, id in ipairs(ids) do
  local key = key_task(id)
  if inst == '' or redis.call('HGET', key, 'inst') == inst then
    out[#out + 1] = redis.call('HGETALL', key)
  end
end
return out
`)
