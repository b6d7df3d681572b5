package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Fields of a task hash. Times are Unix ms ("0" = not yet); workflow,
// params, ckpts, result and error are absent when nil. qm is the task's
// queue member, kept while it runs so a requeue restores its place, and
// dropped when it ends.
const (
	fID         = "id"
	fOwner      = "owner"
	fStatus     = "status"
	fPriority   = "prio"
	fProgress   = "progress"
	fInstance   = "inst"
	fAttempts   = "attempts"
	fSeq        = "seq"
	fWorkflow   = "workflow"
	fParams     = "params"
	fCkpts      = "ckpts"
	fCkptKey    = "ck"      // task.CheckpointKey(ckpts), for warm-model placement
	fRequires   = "req"     // the labels the task requires, JSON; absent for none
	fCap        = "cap"     // the placement requirement's key; absent for none
	fTimeout    = "timeout" // nanoseconds
	fCancel     = "cancel"  // "1" when a cancel was requested
	fLeaseOwner = "lowner"
	fLeaseExp   = "lexp"
	fResult     = "result"
	fError      = "error"
	fCreated    = "created"
	fUpdated    = "updated"
	fStarted    = "started"
	fFinished   = "finished"
	fPinned     = "pinned" // "1" when pinned (retention keeps it); absent otherwise
)

// listFields are the fields TaskList reads: all but the bodies.
var listFields = []any{
	fID, fOwner, fStatus, fPriority, fProgress, fInstance, fAttempts, fSeq, fCkpts, fTimeout, fCancel,
	fLeaseOwner, fLeaseExp, fResult, fError, fCreated, fUpdated, fStarted, fFinished, fRequires, fCap, fPinned,
}

// insertFields are the hash fields of a new task; the script adds seq and qm.
func insertFields(p *store.TaskInsertParams) ([]any, error) {
	now := msArg(p.Now)
	f := []any{
		fID, p.ID, fOwner, p.Owner, fStatus, string(task.StatusPending), fPriority, strconv.Itoa(p.Priority),
		fProgress, "0", fInstance, "", fAttempts, "0", fTimeout, strconv.FormatInt(int64(p.Timeout), 10),
		fCancel, "0", fLeaseOwner, "", fLeaseExp, "0", fCreated, now, fUpdated, now, fStarted, "0", fFinished, "0",
	}
	if p.Workflow != nil {
		f = append(f, fWorkflow, []byte(p.Workflow))
	}
	if p.Params != nil {
		f = append(f, fParams, []byte(p.Params))
	}
	if p.Checkpoints != nil {
		b, err := json.Marshal(p.Checkpoints)
		if err != nil {
			return nil, err
		}
		f = append(f, fCkpts, b, fCkptKey, task.CheckpointKey(p.Checkpoints))
	}
	if len(p.Requires) > 0 {
		b, err := json.Marshal(p.Requires)
		if err != nil {
			return nil, err
		}
		f = append(f, fRequires, b)
	}
	if p.Cap != nil && p.Cap.Key != "" {
		f = append(f, fCap, p.Cap.Key)
	}
	return f, nil
}

// fieldReader decodes hash fields, keeping the first error.
type fieldReader struct {
	m   map[string]string
	err error
}

func (r *fieldReader) int(name string) int64 {
	s, ok := r.m[name]
	if !ok || s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("field %s: %w", name, err)
	}
	return n
}

func (r *fieldReader) time(name string) time.Time { return fromMS(r.int(name)) }

// bytes is a body field, nil when absent.
func (r *fieldReader) bytes(name string) json.RawMessage {
	s, ok := r.m[name]
	if !ok {
		return nil
	}
	return json.RawMessage(s)
}

// json decodes a JSON field into v, leaving v alone when absent.
func (r *fieldReader) json(name string, v any) {
	s, ok := r.m[name]
	if !ok || s == "" {
		return
	}
	if err := json.Unmarshal([]byte(s), v); err != nil && r.err == nil {
		r.err = fmt.Errorf("field %s: %w", name, err)
	}
}

// decodeTask builds a task from its hash fields.
func decodeTask(m map[string]string) (*task.Task, error) {
	r := &fieldReader{m: m}
	t := &task.Task{
		ID: m[fID], Owner: m[fOwner], Status: task.Status(m[fStatus]), Priority: int(r.int(fPriority)),
		Progress: int(r.int(fProgress)), InstanceID: m[fInstance], Attempts: int(r.int(fAttempts)),
		Seq: r.int(fSeq), Workflow: r.bytes(fWorkflow), Params: r.bytes(fParams),
		Timeout: time.Duration(r.int(fTimeout)), CancelRequested: m[fCancel] == "1",
		LeaseOwner: m[fLeaseOwner], LeaseExpiresAt: r.time(fLeaseExp), CapKey: m[fCap],
		CreatedAt: r.time(fCreated), UpdatedAt: r.time(fUpdated),
		StartedAt: r.time(fStarted), FinishedAt: r.time(fFinished), Pinned: m[fPinned] == "1",
	}
	r.json(fCkpts, &t.Checkpoints)
	r.json(fRequires, &t.Requires)
	r.json(fResult, &t.Result)
	r.json(fError, &t.Error)
	if r.err != nil {
		return nil, fmt.Errorf("decode task %s: %w", t.ID, r.err)
	}
	return t, nil
}

// pairs reads a script's HGETALL reply (field, value, field, value...).
func pairs(v any) (map[string]string, error) {
	arr, ok := v.([]any)
	if !ok || len(arr)%2 != 0 {
		return nil, fmt.Errorf("unexpected reply %T", v)
	}
	m := make(map[string]string, len(arr)/2)
	for i := 0; i < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		m[k] = val
	}
	return m, nil
}

// taskReply decodes a script's HGETALL reply of one task.
func taskReply(v any) (*task.Task, error) {
	m, err := pairs(v)
	if err != nil {
		return nil, err
	}
	return decodeTask(m)
}

// TaskInsert adds a pending task; a duplicate id is store.ErrConflict.
func (s *Store) TaskInsert(ctx context.Context, p *store.TaskInsertParams) (*task.Task, error) {
	keys, args, err := s.insertArgs(p)
	if err != nil {
		return nil, wrap(err, "insert task %s", p.ID)
	}
	seq, err := insertTaskScript.Run(ctx, s.rdb, keys, args...).Int64()
	if err != nil {
		return nil, wrap(err, "insert task %s", p.ID)
	}
	return inserted(p, seq), nil
}

// inserted is the task p inserted, numbered seq.
func inserted(p *store.TaskInsertParams, seq int64) *task.Task {
	now := fromMS(ms(p.Now))
	return &task.Task{
		ID: p.ID, Owner: p.Owner, Status: task.StatusPending, Priority: p.Priority, Seq: seq,
		Workflow: slices.Clone(p.Workflow), Params: slices.Clone(p.Params), Checkpoints: slices.Clone(p.Checkpoints),
		Requires: cloneLabels(p.Requires), CapKey: capKey(p), Timeout: p.Timeout, CreatedAt: now, UpdatedAt: now,
	}
}

// cloneLabels copies labels; nil for none, as a read returns them.
func cloneLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// insertArgs builds the KEYS and ARGV of insertTaskScript: the prefix,
// then insert_task's arguments (luaInsert).
func (s *Store) insertArgs(p *store.TaskInsertParams) ([]string, []any, error) {
	fields, err := insertFields(p)
	if err != nil {
		return nil, nil, err
	}
	args := []any{s.keys.prefix, p.ID, p.Owner, msArg(p.Now), queueMemberPrefix(store.Rank(p.Priority, p.Now, p.Aging)),
		max(p.MaxPending, 0)}
	if key := capKey(p); key != "" {
		args = append(args, key, p.Cap.Data, len(p.Cap.Instances))
		for _, id := range p.Cap.Instances {
			args = append(args, id)
		}
	} else {
		args = append(args, "", "", 0)
	}
	args = append(args, len(p.Events), s.keys.events(), s.logSize)
	for _, ev := range p.Events {
		if args, err = eventArgs(args, ev); err != nil {
			return nil, nil, fmt.Errorf("encode %s: %w", ev.Type, err)
		}
	}
	return []string{s.keys.task(p.ID), s.keys.seq(), s.keys.eventLog(), s.keys.eventSeq()}, append(args, fields...), nil
}

// capKey is the key of a new task's requirement, "" for none.
func capKey(p *store.TaskInsertParams) string {
	if p.Cap == nil {
		return ""
	}
	return p.Cap.Key
}

// TaskGet returns one task with its workflow and params.
func (s *Store) TaskGet(ctx context.Context, id string) (*task.Task, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.task(id)).Result()
	if err == nil && len(m) == 0 {
		err = redis.Nil
	}
	if err != nil {
		return nil, wrap(err, "get task %s", id)
	}
	t, err := decodeTask(m)
	return t, wrap(err, "get task %s", id)
}

// TaskList pages through tasks newest first: one ZREVRANGE for one status
// (or all), a merge of the per-status lists for several.
func (s *Store) TaskList(ctx context.Context, p *store.TaskListParams) (*store.TaskListResult, error) {
	lists := s.taskLists(p.Owner, p.Statuses)
	if len(lists) == 0 {
		return &store.TaskListResult{}, nil
	}
	args := append([]any{s.keys.prefix, max(p.Offset, 0), store.PageLimit(p.Limit), s.deepOffset}, listFields...)
	reply, err := listTasksScript.Run(ctx, s.rdb, lists, args...).Slice()
	if err != nil {
		return nil, wrap(err, "list tasks")
	}
	res, err := decodeTaskPage(reply)
	return res, wrap(err, "list tasks")
}

// taskLists names the list ZSETs a TaskList reads: the all-tasks list
// when every status is kept, else one list per known status (none when
// only unknown statuses were asked for).
func (s *Store) taskLists(owner string, statuses []task.Status) []string {
	var kept []task.Status
	for _, st := range statuses {
		if st.Valid() && !slices.Contains(kept, st) {
			kept = append(kept, st)
		}
	}
	if len(statuses) > 0 && len(kept) < len(task.AllStatuses) {
		return s.keys.statusLists(owner, kept)
	}
	if owner == "" {
		return []string{s.keys.list(allTasks)}
	}
	return []string{s.keys.ownerList(allTasks, owner)}
}

// decodeTaskPage reads listTasksScript's reply.
func decodeTaskPage(reply []any) (*store.TaskListResult, error) {
	if len(reply) == 0 {
		return nil, fmt.Errorf("empty reply")
	}
	total, _ := reply[0].(int64)
	res := &store.TaskListResult{Total: int(total), Items: make([]*task.Task, 0, len(reply)-1)}
	for _, item := range reply[1:] {
		values, _ := item.([]any)
		m := make(map[string]string, len(listFields))
		for i, v := range values {
			if str, ok := v.(string); ok && i < len(listFields) {
				m[listFields[i].(string)] = str
			}
		}
		t, err := decodeTask(m)
		if err != nil {
			return nil, err
		}
		res.Items = append(res.Items, t)
	}
	return res, nil
}

// TaskQueuePosition is the 1-based position of a pending task in claim
// order: its rank in the queue ZSET.
func (s *Store) TaskQueuePosition(ctx context.Context, id string) (int, error) {
	n, err := queuePositionScript.Run(ctx, s.rdb, []string{s.keys.task(id), s.keys.queue()}).Int()
	return n, wrap(err, "queue position of task %s", id)
}

// TaskQueuePositions reads the positions of the pending tasks among ids,
// one script call each (a ZRANK in the queue: cheap whatever the depth).
func (s *Store) TaskQueuePositions(ctx context.Context, ids []string) (map[string]int, error) {
	out := make(map[string]int, len(ids))
	for _, id := range ids {
		n, err := s.TaskQueuePosition(ctx, id)
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, nil
}

// TaskQueueHead lists the first pending tasks in rank order: the head of
// the queue ZSET with each task's requirement, read in one script.
func (s *Store) TaskQueueHead(ctx context.Context, p *store.TaskQueueHeadParams) ([]store.QueuedTask, error) {
	reply, err := queueHeadScript.Run(ctx, s.rdb, []string{s.keys.queue()}, s.keys.prefix, store.QueueHeadLimit(p.Limit)).StringSlice()
	if err != nil {
		return nil, wrap(err, "list the queue's head")
	}
	out := make([]store.QueuedTask, 0, len(reply)/2)
	for i := 0; i+1 < len(reply); i += 2 {
		out = append(out, store.QueuedTask{ID: reply[i], CapKey: reply[i+1]})
	}
	return out, nil
}

// TaskCounts counts tasks by status: the ZCARD of each status list, read
// in one MULTI so the counts are a consistent snapshot.
func (s *Store) TaskCounts(ctx context.Context) (map[task.Status]int, error) {
	cmds := make([]*redis.IntCmd, len(task.AllStatuses))
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, st := range task.AllStatuses {
			cmds[i] = pipe.ZCard(ctx, s.keys.list(string(st)))
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "count tasks")
	}
	counts := make(map[task.Status]int, len(task.AllStatuses))
	for i, st := range task.AllStatuses {
		counts[st] = int(cmds[i].Val())
	}
	return counts, nil
}
