package redisstore

import (
	"fmt"
	"strconv"

	"github.com/comfyfleet/comfyfleet/internal/task"
)

// keys builds every Redis key and channel name of a store. Each name is the
// store's prefix followed by a fixed word and, for per-record keys, the
// record's id as the last segment, so no two builders can produce the same
// name whatever the ids contain. luaKeys below is the same set of builders
// for the Lua scripts; TestKeyBuildersAgree checks that the two agree.
type keys struct{ prefix string }

// allTasks names the list of every task, next to the per-status lists.
// It is not a status, so it never collides with one.
const allTasks = "all"

// task is the hash holding one task (fields listed in task.go).
func (k keys) task(id string) string { return k.prefix + "task:" + id }

// seq is the counter that hands out task Seq numbers (INCR).
func (k keys) seq() string { return k.prefix + "seq" }

// queue is the ZSET of pending tasks in rank order (see queueMemberPrefix).
func (k keys) queue() string { return k.prefix + "queue" }

// ownerQueue is queue restricted to one owner's tasks (the owner "" too).
func (k keys) ownerQueue(owner string) string { return k.prefix + "queue:owner:" + owner }

// ckptQueue is the per-owner checkpoint queue of stores before placement
// by capability; only the upgrade (luaMigrateCaps) still names it.
func (k keys) ckptQueue(owner, ckpt string) string {
	return k.prefix + "queue:ckpt:" + strconv.Itoa(len(owner)) + ":" + owner + ckpt
}

// capQueue is ownerQueue restricted to the tasks of one placement
// requirement (CapKey, "" included). The owner's length comes first, so no
// owner and requirement pair names the key of another.
func (k keys) capQueue(owner, cap string) string {
	return k.prefix + "queue:cap:" + strconv.Itoa(len(owner)) + ":" + owner + cap
}

// capCkptQueue is capQueue restricted to the tasks of one CheckpointKey
// (never ""), for warm placement; lengths again keep the names apart.
func (k keys) capCkptQueue(owner, cap, ckpt string) string {
	return k.prefix + "queue:capckpt:" + strconv.Itoa(len(owner)) + ":" + owner +
		strconv.Itoa(len(cap)) + ":" + cap + ckpt
}

// ownerCaps is the SET of the requirements (CapKey) of an owner's pending
// tasks: those whose capQueue is not empty.
func (k keys) ownerCaps(owner string) string { return k.prefix + "queue:caps:" + owner }

// capsVersion is the string set once the queue indexes have the
// per-requirement form (luaMigrateCaps).
func (k keys) capsVersion() string { return k.prefix + "queue:capsv" }

// queueOwners is the ZSET of the owners with pending tasks in fair-share
// order: scored by running count × 2^33 plus the serial of their last claim
// (ownerServed), so the claim serves the fewest running, then the least
// recently served, first.
func (k keys) queueOwners() string { return k.prefix + "queue:owners" }

// ownerServed is the hash of each owner's last claim serial (absent: never).
func (k keys) ownerServed() string { return k.prefix + "queue:served" }

// servedSerial is the counter of claims that hands out ownerServed serials.
func (k keys) servedSerial() string { return k.prefix + "queue:serial" }

// ownerRunning is the hash of each owner's running count (absent: none).
func (k keys) ownerRunning() string { return k.prefix + "running:owners" }

// list is the newest-first ZSET of the tasks in a status, or of every task
// for allTasks (see luaMembers).
func (k keys) list(status string) string { return k.prefix + "list:" + status }

// ownerList is list restricted to one owner. Tasks without an owner are in
// no owner list.
func (k keys) ownerList(status, owner string) string {
	return k.prefix + "owner:" + status + ":" + owner
}

// leases is the ZSET of running tasks scored by lease expiry (Unix ms).
func (k keys) leases() string { return k.prefix + "running:leases" }

// runningOn is the SET of the ids of the tasks running on one instance.
func (k keys) runningOn(instanceID string) string { return k.prefix + "running:on:" + instanceID }

// instance is the hash of one instance's state.
func (k keys) instance(id string) string { return k.prefix + "instance:" + id }

// instances is the SET of every stored instance id.
func (k keys) instances() string { return k.prefix + "instances" }

// catalog is the hash of one node catalogue (data, created), by content hash.
func (k keys) catalog(hash string) string { return k.prefix + "catalog:" + hash }

// cap is the hash of one placement requirement (data, created), by key.
func (k keys) cap(key string) string { return k.prefix + "cap:" + key }

// caps is the SET of every stored requirement key.
func (k keys) caps() string { return k.prefix + "caps" }

// capOn is the SET of the instance ids able to run one requirement.
func (k keys) capOn(key string) string { return k.prefix + "capon:" + key }

// capable is the SET of the requirement keys one instance can run.
func (k keys) capable(instanceID string) string { return k.prefix + "capable:" + instanceID }

// file is the hash of one file record.
func (k keys) file(id string) string { return k.prefix + "file:" + id }

// files is the newest-first ZSET of every file id, scored by CreatedAt.
func (k keys) files() string { return k.prefix + "files:all" }

// ownerFiles is files restricted to one owner.
func (k keys) ownerFiles(owner string) string { return k.prefix + "files:owner:" + owner }

// fileBytes is the hash of each owner's stored bytes, the sum of the sizes
// of their files. An owner's field is created by their first UsageGet
// (usageScript) and kept from then on by the file scripts.
func (k keys) fileBytes() string { return k.prefix + "files:bytes" }

// taskFiles is files restricted to the outputs of one task.
func (k keys) taskFiles(taskID string) string { return k.prefix + "files:task:" + taskID }

// apiKey is the hash of one API key.
func (k keys) apiKey(id string) string { return k.prefix + "apikey:" + id }

// apiKeys is the newest-first ZSET of every API key id, scored by CreatedAt.
func (k keys) apiKeys() string { return k.prefix + "apikeys:all" }

// ownerAPIKeys is apiKeys restricted to one owner.
func (k keys) ownerAPIKeys(owner string) string { return k.prefix + "apikeys:owner:" + owner }

// retentionTasks is the ZSET of the ids of finished, unpinned tasks, scored
// by FinishedAt (Unix ms): the pruner reads its oldest end.
func (k keys) retentionTasks() string { return k.prefix + "retention:tasks" }

// retentionFiles is the ZSET of the ids of unpinned files whose task (if
// any) is not pinned, scored by CreatedAt (Unix ms).
func (k keys) retentionFiles() string { return k.prefix + "retention:files" }

// retentionVersion is set once retentionTasks and retentionFiles hold the
// records stored before they existed (backfillScript).
func (k keys) retentionVersion() string { return k.prefix + "retention:v" }

// retentionBackfill is where the backfill of retentionTasks and
// retentionFiles is ("<phase>:<ZSCAN cursor>") until it completes.
func (k keys) retentionBackfill() string { return k.prefix + "retention:backfill" }

// config is the string holding the runtime config document.
func (k keys) config() string { return k.prefix + "config" }

// lease is the hash of one named lease (holder, expiry).
func (k keys) lease(name string) string { return k.prefix + "lease:" + name }

// events is the pub/sub channel of the store's events.
func (k keys) events() string { return k.prefix + "events" }

// eventLog is the STREAM of logged events (event.Logged), entry ids 0-<seq>,
// trimmed to about the store's event log size.
func (k keys) eventLog() string { return k.prefix + "eventlog" }

// eventSeq is the counter that numbers the logged events (INCR).
func (k keys) eventSeq() string { return k.prefix + "eventseq" }

// luaKeys defines the key builders of the scripts. Every script that uses
// it gets the prefix as ARGV[1]. The definitions mirror the Go builders
// above one for one.
const luaKeys = `
local P = ARGV[1]
local function key_task(id) return P .. 'task:' .. id end
local function key_queue() return P .. 'queue' end
local function key_owner_queue(owner) return P .. 'queue:owner:' .. owner end
local function key_ckpt_queue(owner, ckpt) return P .. 'queue:ckpt:' .. #owner .. ':' .. owner .. ckpt end
local function key_cap_queue(owner, cap) return P .. 'queue:cap:' .. #owner .. ':' .. owner .. cap end
local function key_cap_ckpt_queue(owner, cap, ckpt)
  return P .. 'queue:capckpt:' .. #owner .. ':' .. owner .. #cap .. ':' .. cap .. ckpt
end
local function key_owner_caps(owner) return P .. 'queue:caps:' .. owner end
local function key_caps_version() return P .. 'queue:capsv' end
local function key_cap(key) return P .. 'cap:' .. key end
local function key_caps() return P .. 'caps' end
local function key_cap_on(key) return P .. 'capon:' .. key end
local function key_capable(instance) return P .. 'capable:' .. instance end
local function key_queue_owners() return P .. 'queue:owners' end
local function key_owner_running() return P .. 'running:owners' end
local function key_owner_served() return P .. 'queue:served' end
local function key_served_serial() return P .. 'queue:serial' end
local function key_list(status) return P .. 'list:' .. status end
local function key_owner_list(status, owner) return P .. 'owner:' .. status .. ':' .. owner end
local function key_leases() return P .. 'running:leases' end
local function key_running_on(instance) return P .. 'running:on:' .. instance end
local function key_instance(id) return P .. 'instance:' .. id end
local function key_file(id) return P .. 'file:' .. id end
local function key_files() return P .. 'files:all' end
local function key_owner_files(owner) return P .. 'files:owner:' .. owner end
local function key_task_files(task) return P .. 'files:task:' .. task end
local function key_file_bytes() return P .. 'files:bytes' end
local function key_retention_tasks() return P .. 'retention:tasks' end
local function key_retention_files() return P .. 'retention:files' end
local function key_retention_version() return P .. 'retention:v' end
local function key_retention_backfill() return P .. 'retention:backfill' end
`

// queueMemberPrefix starts the member of a pending task in the queue ZSETs.
// Every member has score 0, so a ZSET orders them by their bytes: 16 hex
// digits of the rank (store.Rank) in offset binary, so lower ranks sort
// first; 16 hex digits of Seq, so equal ranks go first in, first out; then
// the id. This orders every int64 rank and Seq exactly, which a float64
// score (53 bits of integer) could not. The insert script appends Seq and
// the id (Lua queue_member), since Seq is assigned inside the script.
func queueMemberPrefix(rank int64) string {
	return fmt.Sprintf("%016x", uint64(rank)^1<<63)
}

// luaMembers builds and reads the members of the queue and of the list
// ZSETs. A list member is 16 hex digits of Seq then the id, scored by
// CreatedAt in Unix ms, so tasks created in the same millisecond list by
// Seq. Seq stays below 2^53, where Lua numbers are exact.
const luaMembers = `
local function queue_member(prefix, seq, id) return prefix .. string.format('%016x', tonumber(seq)) .. id end
local function queue_id(member) return string.sub(member, 33) end
local function list_member(seq, id) return string.format('%016x', tonumber(seq)) .. id end
local function list_id(member) return string.sub(member, 17) end
-- rank_plus is the 16 hex digits of a queue member's rank plus n (0 <= n <
-- 2^32), computed in two 32-bit halves that Lua numbers hold exactly.
local function rank_plus(member, n)
  local hi = tonumber(string.sub(member, 1, 8), 16)
  local lo = tonumber(string.sub(member, 9, 16), 16) + n
  hi = hi + math.floor(lo / 4294967296)
  lo = lo % 4294967296
  if hi > 4294967295 then return 'ffffffffffffffff' end
  return string.format('%08x%08x', hi, lo)
end
`

// statusLists names the per-status lists of statuses, global or of one owner.
func (k keys) statusLists(owner string, statuses []task.Status) []string {
	out := make([]string, len(statuses))
	for i, st := range statuses {
		if owner == "" {
			out[i] = k.list(string(st))
		} else {
			out[i] = k.ownerList(string(st), owner)
		}
	}
	return out
}
