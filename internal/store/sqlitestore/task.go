package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// taskCols selects a whole task from the tasks table (also usable in
// RETURNING); the body comes from task_bodies.
const taskCols = `seq, id, owner, status, priority, progress, instance_id, attempts,
	(SELECT workflow FROM task_bodies b WHERE b.seq = tasks.seq) AS workflow,
	(SELECT params FROM task_bodies b WHERE b.seq = tasks.seq) AS params,
	checkpoints, timeout_ns, cancel_requested, lease_owner, lease_expires_at,
	result, error, created_at, updated_at, started_at, finished_at, requires, cap_key, pinned`

// taskListCols is taskCols without the body, for lists.
const taskListCols = `seq, id, owner, status, priority, progress, instance_id, attempts,
	NULL AS workflow, NULL AS params,
	checkpoints, timeout_ns, cancel_requested, lease_owner, lease_expires_at,
	result, error, created_at, updated_at, started_at, finished_at, requires, cap_key, pinned`

type scanner interface{ Scan(dest ...any) error }

// scanTask reads one row of taskCols or taskListCols.
func scanTask(sc scanner) (*task.Task, error) {
	var (
		tk                                task.Task
		workflow, params                  []byte
		checkpoints, result, taskErr      sql.NullString
		requires                          sql.NullString
		timeoutNS, leaseExp               int64
		created, updated, started, finish int64
	)
	err := sc.Scan(&tk.Seq, &tk.ID, &tk.Owner, &tk.Status, &tk.Priority, &tk.Progress, &tk.InstanceID, &tk.Attempts,
		&workflow, &params, &checkpoints, &timeoutNS, &tk.CancelRequested, &tk.LeaseOwner, &leaseExp,
		&result, &taskErr, &created, &updated, &started, &finish, &requires, &tk.CapKey, &tk.Pinned)
	if err != nil {
		return nil, err
	}
	tk.Workflow, tk.Params = workflow, params
	tk.Timeout = time.Duration(timeoutNS)
	tk.LeaseExpiresAt, tk.CreatedAt, tk.UpdatedAt = fromMS(leaseExp), fromMS(created), fromMS(updated)
	tk.StartedAt, tk.FinishedAt = fromMS(started), fromMS(finish)
	if err := unmarshalNull(checkpoints, &tk.Checkpoints); err != nil {
		return nil, err
	}
	if err := unmarshalNull(requires, &tk.Requires); err != nil {
		return nil, err
	}
	if err := unmarshalNull(result, &tk.Result); err != nil {
		return nil, err
	}
	return &tk, unmarshalNull(taskErr, &tk.Error)
}

// scanTasks reads every row of rows and closes it.
func scanTasks(rows *sql.Rows) ([]*task.Task, error) {
	defer rows.Close()
	var out []*task.Task
	for rows.Next() {
		tk, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, tk)
	}
	return out, rows.Err()
}

// cloneLabels copies labels; nil for none, as a read returns them.
func cloneLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// marshalNull encodes v as JSON text, or NULL when v is nil.
func marshalNull[T any](v *T) (any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// unmarshalNull decodes JSON text unless the column is NULL.
func unmarshalNull(s sql.NullString, v any) error {
	if !s.Valid {
		return nil
	}
	return json.Unmarshal([]byte(s.String), v)
}

// bytesOrNull keeps a nil body NULL.
func bytesOrNull(b []byte) any {
	if b == nil {
		return nil
	}
	return []byte(b)
}

// taskInsertSQL adds the task row unless :max is above zero and the owner
// has that many pending tasks (queue_owners); bodyInsertSQL then adds its
// body under the new row's seq, in the same transaction.
const (
	taskInsertSQL = `INSERT INTO tasks (id, owner, status, priority, rank, checkpoints, ckpt_key, timeout_ns, created_at, updated_at, requires, cap_key)
	SELECT :id, :owner, 'pending', :priority, :rank, :checkpoints, :ckpt, :timeout, :now, :now, :requires, :cap
	WHERE :max <= 0 OR coalesce((SELECT pending FROM queue_owners WHERE owner = :owner), 0) < :max`
	bodyInsertSQL = `INSERT INTO task_bodies (seq, workflow, params) VALUES (?, ?, ?)`
)

// TaskInsert adds a pending task.
func (s *Store) TaskInsert(ctx context.Context, p *store.TaskInsertParams) (*task.Task, error) {
	t, _, err := s.insertClaim(ctx, p, nil)
	return t, err
}

// TaskInsertClaim adds a pending task and claims one for c.InstanceID in
// the same transaction.
func (s *Store) TaskInsertClaim(ctx context.Context, p *store.TaskInsertParams, c *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	return s.insertClaim(ctx, p, c)
}

// insertClaim adds a pending task and, with c set, claims the next task for
// c.InstanceID in the same transaction.
func (s *Store) insertClaim(ctx context.Context, p *store.TaskInsertParams, c *store.TaskClaimParams) (*task.Task, *task.Task, error) {
	var checkpoints, requires any
	if p.Checkpoints != nil {
		var err error
		if checkpoints, err = marshalNull(&p.Checkpoints); err != nil {
			return nil, nil, wrap(err, "insert task %s", p.ID)
		}
	}
	if len(p.Requires) > 0 {
		var err error
		if requires, err = marshalNull(&p.Requires); err != nil {
			return nil, nil, wrap(err, "insert task %s", p.ID)
		}
	}
	now := ms(p.Now)
	var seq int64
	capKey := ""
	if p.Cap != nil {
		capKey = p.Cap.Key
	}
	var claimed *task.Task
	err := s.w.execLogged(ctx, func(ctx context.Context, ex execer) ([]event.Event, error) {
		if p.Cap != nil {
			if err := s.capPut(ctx, ex, p.Cap, now); err != nil {
				return nil, err
			}
		}
		res, err := ex.stmt(ctx, s.ws.taskInsert).ExecContext(ctx,
			sql.Named("id", p.ID), sql.Named("owner", p.Owner), sql.Named("priority", int64(p.Priority)),
			sql.Named("rank", store.Rank(p.Priority, p.Now, p.Aging)), sql.Named("checkpoints", checkpoints),
			sql.Named("ckpt", task.CheckpointKey(p.Checkpoints)), sql.Named("timeout", int64(p.Timeout)),
			sql.Named("now", now), sql.Named("max", int64(p.MaxPending)),
			sql.Named("requires", requires), sql.Named("cap", capKey))
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return nil, cmp.Or(err, store.ErrLimit)
		}
		if seq, err = res.LastInsertId(); err != nil {
			return nil, err
		}
		if _, err := ex.stmt(ctx, s.ws.bodyInsert).ExecContext(ctx, seq, bytesOrNull(p.Workflow), bytesOrNull(p.Params)); err != nil {
			return nil, err
		}
		var logged []event.Event
		if len(p.Events) > 0 {
			if logged, err = s.logEvents(ctx, ex, ownEvents(p.Events)...); err != nil {
				return nil, err
			}
		}
		if c == nil {
			return logged, nil
		}
		if claimed, err = s.claimIn(ctx, ex, c); err != nil {
			claimed = nil
			if errors.Is(err, store.ErrNotFound) {
				return logged, nil
			}
			return nil, err
		}
		more, err := s.claimEvents(ctx, ex, c, claimed)
		return append(logged, more...), err
	})
	if err != nil {
		return nil, nil, wrap(err, "insert task %s", p.ID)
	}
	return &task.Task{
		ID: p.ID, Owner: p.Owner, Status: task.StatusPending, Priority: p.Priority, Seq: seq,
		Workflow: slices.Clone(p.Workflow), Params: slices.Clone(p.Params), Checkpoints: slices.Clone(p.Checkpoints),
		Requires: cloneLabels(p.Requires), CapKey: capKey, Timeout: p.Timeout, CreatedAt: fromMS(now), UpdatedAt: fromMS(now),
	}, claimed, nil
}

const taskGetSQL = `SELECT ` + taskCols + ` FROM tasks WHERE id = ?`

// TaskGet returns one task with its workflow and params.
func (s *Store) TaskGet(ctx context.Context, id string) (*task.Task, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "get task %s", id)
	}
	defer s.readGate.leave()
	tk, err := scanTask(s.rs.taskGet.QueryRowContext(ctx, id))
	if err != nil {
		return nil, wrap(err, "get task %s", id)
	}
	return tk, nil
}

// TaskList pages through tasks newest first. With several statuses it merges
// one index range per status, so a page never sorts the whole table. With
// one status or none, a page past the middle is read from the oldest end of
// the index and reversed: OFFSET walks the index, so the last page costs as
// little as the first and the middle one the most.
func (s *Store) TaskList(ctx context.Context, p *store.TaskListParams) (*store.TaskListResult, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list tasks")
	}
	defer s.readGate.leave()
	limit, offset := store.PageLimit(p.Limit), max(p.Offset, 0)
	statuses := uniqueStatuses(p.Statuses)
	totalQuery, totalArgs := taskTotalQuery(p.Owner, statuses)
	pageQuery, pageArgs := taskPageQuery(p.Owner, statuses, limit, offset)
	queries := []string{totalQuery, pageQuery}
	reversible := len(statuses) <= 1
	if reversible {
		queries = append(queries, taskPageQueryOldest(p.Owner, statuses))
	}
	stmts, release, err := s.cachedStmts(ctx, queries...)
	if err != nil {
		return nil, wrap(err, "list tasks")
	}
	defer release()
	res := &store.TaskListResult{}
	err = inTx(ctx, s.read, true, func(tx *sql.Tx) error {
		if err := tx.StmtContext(ctx, stmts[0]).QueryRowContext(ctx, totalArgs...).Scan(&res.Total); err != nil {
			return err
		}
		fromEnd := res.Total - offset - limit // tasks after the page
		if offset >= res.Total {
			return nil
		}
		st, args := stmts[1], pageArgs
		if reversible && fromEnd < offset {
			_, whereArgs := taskWhere(p.Owner, statuses)
			st, args = stmts[2], append(whereArgs, min(limit, res.Total-offset), max(fromEnd, 0))
		}
		rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		if res.Items, err = scanTasks(rows); err != nil {
			return err
		}
		if st != stmts[1] {
			slices.Reverse(res.Items)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "list tasks")
	}
	return res, nil
}

func uniqueStatuses(in []task.Status) []task.Status {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// taskPageQuery builds the page query of TaskList.
func taskPageQuery(owner string, statuses []task.Status, limit, offset int) (string, []any) {
	const order = ` ORDER BY created_at DESC, seq DESC`
	if len(statuses) <= 1 {
		where, args := taskWhere(owner, statuses)
		return `SELECT ` + taskListCols + ` FROM tasks` + where + order + ` LIMIT ? OFFSET ?`, append(args, limit, offset)
	}
	arms := make([]string, len(statuses))
	var args []any
	for i, st := range statuses {
		where, armArgs := taskWhere(owner, []task.Status{st})
		arms[i] = `SELECT * FROM (SELECT ` + taskListCols + ` FROM tasks` + where + order + ` LIMIT ?)`
		args = append(append(args, armArgs...), limit+offset)
	}
	return strings.Join(arms, " UNION ALL ") + order + ` LIMIT ? OFFSET ?`, append(args, limit, offset)
}

// taskPageQueryOldest is the single-status page query of TaskList read
// from the oldest end (its arguments: taskWhere's, then limit and offset).
func taskPageQueryOldest(owner string, statuses []task.Status) string {
	where, _ := taskWhere(owner, statuses)
	return `SELECT ` + taskListCols + ` FROM tasks` + where + ` ORDER BY created_at, seq LIMIT ? OFFSET ?`
}

// taskWhere filters by owner (when set) and by statuses (when any).
func taskWhere(owner string, statuses []task.Status) (string, []any) {
	var conds []string
	var args []any
	if owner != "" {
		conds, args = append(conds, "owner = ?"), append(args, owner)
	}
	if len(statuses) > 0 {
		conds = append(conds, "status IN ("+placeholders(len(statuses))+")")
		for _, st := range statuses {
			args = append(args, string(st))
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// taskTotalQuery counts matching tasks: from task_counts without an owner,
// by counting the owner's index range otherwise.
func taskTotalQuery(owner string, statuses []task.Status) (string, []any) {
	where, args := taskWhere(owner, statuses)
	if owner == "" {
		return `SELECT coalesce(sum(n), 0) FROM task_counts` + where, args
	}
	return `SELECT count(*) FROM tasks` + where, args
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// queuePositionSQL counts, on the claim index, the pending tasks ahead of one:
// those of lower rank, then those of equal rank and lower Seq.
const queuePositionSQL = `SELECT t.status, CASE WHEN t.status = 'pending' THEN
		(SELECT count(*) FROM tasks p INDEXED BY tasks_claim WHERE p.status = 'pending' AND p.rank < t.rank) +
		(SELECT count(*) FROM tasks p INDEXED BY tasks_claim WHERE p.status = 'pending' AND p.rank = t.rank AND p.seq < t.seq)
	ELSE 0 END
	FROM tasks t WHERE t.id = ?`

// queueAskedSQL reads the place in line (rank, seq) of the pending tasks
// among a JSON array of ids.
const queueAskedSQL = `SELECT id, rank, seq FROM tasks
	WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending'`

// queueSegmentSQL counts the pending tasks after (rank, seq) ?1, ?2 up to
// and including ?3, ?4: a range of the claim index.
const queueSegmentSQL = `SELECT count(*) FROM tasks INDEXED BY tasks_claim
	WHERE status = 'pending' AND (rank, seq) > (?1, ?2) AND (rank, seq) <= (?3, ?4)`

// TaskQueuePositions reads the positions of the pending tasks among ids:
// in line order, each one's is the one before's plus the tasks between
// the two, so the claim index is counted once, as far as the deepest.
func (s *Store) TaskQueuePositions(ctx context.Context, ids []string) (map[string]int, error) {
	out := make(map[string]int, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	asked, err := json.Marshal(ids)
	if err != nil {
		return nil, wrap(err, "queue positions")
	}
	ctx, err = s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "queue positions")
	}
	defer s.readGate.leave()
	type place struct {
		id        string
		rank, seq int64
	}
	var line []place
	rows, err := s.rs.queueAsked.QueryContext(ctx, string(asked))
	if err != nil {
		return nil, wrap(err, "queue positions")
	}
	for rows.Next() {
		var p place
		if err := rows.Scan(&p.id, &p.rank, &p.seq); err != nil {
			rows.Close()
			return nil, wrap(err, "queue positions")
		}
		line = append(line, p)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, wrap(err, "queue positions")
	}
	slices.SortFunc(line, func(a, b place) int { return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.seq, b.seq)) })
	prev, pos := place{rank: math.MinInt64, seq: math.MinInt64}, 0
	for _, p := range line {
		var n int
		if err := s.rs.queueSegment.QueryRowContext(ctx, prev.rank, prev.seq, p.rank, p.seq).Scan(&n); err != nil {
			return nil, wrap(err, "queue positions")
		}
		pos += n
		out[p.id] = pos
		prev = p
	}
	return out, nil
}

// TaskQueuePosition is the 1-based position of a pending task in rank order.
func (s *Store) TaskQueuePosition(ctx context.Context, id string) (int, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return 0, wrap(err, "queue position of task %s", id)
	}
	defer s.readGate.leave()
	var status task.Status
	var ahead int
	if err := s.rs.queuePosition.QueryRowContext(ctx, id).Scan(&status, &ahead); err != nil {
		return 0, wrap(err, "queue position of task %s", id)
	}
	if status != task.StatusPending {
		return 0, wrap(store.ErrConflict, "queue position of task %s: task is %s", id, status)
	}
	return ahead + 1, nil
}

// queueHeadSQL walks the claim index from the head.
const queueHeadSQL = `SELECT id, cap_key FROM tasks INDEXED BY tasks_claim
	WHERE status = 'pending' ORDER BY rank, seq LIMIT ?`

// TaskQueueHead lists the first pending tasks in rank order.
func (s *Store) TaskQueueHead(ctx context.Context, p *store.TaskQueueHeadParams) ([]store.QueuedTask, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list the queue's head")
	}
	defer s.readGate.leave()
	rows, err := s.rs.queueHead.QueryContext(ctx, store.QueueHeadLimit(p.Limit))
	if err != nil {
		return nil, wrap(err, "list the queue's head")
	}
	defer rows.Close()
	var out []store.QueuedTask
	for rows.Next() {
		var q store.QueuedTask
		if err := rows.Scan(&q.ID, &q.CapKey); err != nil {
			return nil, wrap(err, "list the queue's head")
		}
		out = append(out, q)
	}
	return out, wrap(rows.Err(), "list the queue's head")
}

const taskCountsSQL = `SELECT status, n FROM task_counts`

// TaskCounts reads the trigger-maintained counts.
func (s *Store) TaskCounts(ctx context.Context) (map[task.Status]int, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "count tasks")
	}
	defer s.readGate.leave()
	counts := make(map[task.Status]int, len(task.AllStatuses))
	for _, st := range task.AllStatuses {
		counts[st] = 0
	}
	rows, err := s.rs.taskCounts.QueryContext(ctx)
	if err != nil {
		return nil, wrap(err, "count tasks")
	}
	defer rows.Close()
	for rows.Next() {
		var st task.Status
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, wrap(err, "count tasks")
		}
		counts[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(err, "count tasks")
	}
	return counts, nil
}
