package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// claimSQL takes the next task (store.TaskClaim) in one statement on the
// single writer. runnable are the (owner, requirement) pairs with pending
// tasks that the instance can run: queue_caps (kept by triggers) joined with
// the instance's cap_instances, plus the empty requirement. owner1 is the
// fair-share owner: the first entry of the partial index
// queue_owners_waiting (fewest running, least recently served, then name)
// that has a runnable pair. head is that owner's first task over its
// runnable requirements, each one seek of tasks_cap_claim; warm is its first
// task for the instance's model over the same requirements (seeks of
// tasks_cap_ckpt_claim), if it is within the window of the head. The cost is
// one seek per runnable requirement of the owner served, however long the
// queue, plus the owners passed over for having nothing the instance can
// run. INDEXED BY pins the indexes: without statistics the planner may
// prefer a scan. An instance stored as disabled claims nothing (store.
// TaskClaimParams).
const claimSQL = `WITH runnable AS MATERIALIZED (
		SELECT owner, cap_key FROM queue_caps
		WHERE cap_key = '' OR cap_key IN (SELECT cap_key FROM cap_instances WHERE instance_id = :instance)),
	owner1 AS (
		SELECT owner FROM queue_owners INDEXED BY queue_owners_waiting
		WHERE pending > 0 AND owner IN (SELECT owner FROM runnable)
		ORDER BY running, served, owner LIMIT 1),
	head AS (
		SELECT t.seq, t.rank, t.ckpt_key FROM runnable r, tasks t
		WHERE r.owner = (SELECT owner FROM owner1)
			AND t.seq = (SELECT seq FROM tasks INDEXED BY tasks_cap_claim
				WHERE owner = r.owner AND cap_key = r.cap_key AND status = 'pending' ORDER BY rank, seq LIMIT 1)
		ORDER BY t.rank, t.seq LIMIT 1),
	warm AS (
		SELECT t.seq FROM runnable r, tasks t
		WHERE :ckpt <> '' AND r.owner = (SELECT owner FROM owner1) AND (SELECT ckpt_key FROM head) <> :ckpt
			AND t.seq = (SELECT seq FROM tasks INDEXED BY tasks_cap_ckpt_claim
				WHERE owner = r.owner AND cap_key = r.cap_key AND ckpt_key = :ckpt AND ckpt_key <> ''
					AND status = 'pending' ORDER BY rank, seq LIMIT 1)
			AND t.rank <= (SELECT rank FROM head) + :window
		ORDER BY t.rank, t.seq LIMIT 1)
	UPDATE tasks SET status = 'running', instance_id = :instance, attempts = attempts + 1,
		started_at = :now, updated_at = :now, lease_owner = :owner, lease_expires_at = :expires
	WHERE seq = coalesce((SELECT seq FROM warm), (SELECT seq FROM head))
		AND NOT EXISTS (SELECT 1 FROM instances WHERE id = :instance AND enabled = 0)
	RETURNING ` + taskCols

// pendingCountSQL tells an empty queue from one with nothing runnable.
const pendingCountSQL = `SELECT n FROM task_counts WHERE status = 'pending'`

// TaskClaim marks the next pending task (fair share, then warm model) running on p.InstanceID.
func (s *Store) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	var tk *task.Task
	err := s.w.execLogged(ctx, func(ctx context.Context, ex execer) (evs []event.Event, err error) {
		if tk, err = s.claimIn(ctx, ex, p); err != nil {
			return nil, err
		}
		return s.claimEvents(ctx, ex, p, tk)
	})
	if err != nil {
		return nil, wrap(err, "claim task for %s", p.InstanceID)
	}
	return tk, nil
}

// claimEvents logs the events of the claim of tk: those p.LogRunning and
// p.Instance ask for (store.ClaimEvents), then those p.Events builds.
func (s *Store) claimEvents(ctx context.Context, ex execer, p *store.TaskClaimParams, tk *task.Task) ([]event.Event, error) {
	evs, err := store.ClaimEvents(p, tk)
	if err != nil {
		return nil, err
	}
	if p.Events != nil {
		more, err := p.Events(tk)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ownEvents(more)...)
	}
	if len(evs) == 0 {
		return nil, nil
	}
	return s.logEvents(ctx, ex, evs...)
}

// claimIn runs the claim in the caller's write: ErrNotFound when nothing
// is pending, ErrNoneRunnable when nothing pending can run there.
func (s *Store) claimIn(ctx context.Context, ex execer, p *store.TaskClaimParams) (*task.Task, error) {
	ckpt := p.Checkpoint
	if p.WarmWindow <= 0 {
		ckpt = ""
	}
	tk, err := scanTask(ex.stmt(ctx, s.ws.claim).QueryRowContext(ctx,
		sql.Named("ckpt", ckpt), sql.Named("window", p.WarmWindow.Milliseconds()),
		sql.Named("instance", p.InstanceID), sql.Named("owner", p.LeaseOwner),
		sql.Named("now", ms(p.Now)), sql.Named("expires", ms(p.Now.Add(p.LeaseTTL)))))
	if errors.Is(err, sql.ErrNoRows) {
		var pending int64
		if cerr := ex.stmt(ctx, s.ws.pendingCount).QueryRowContext(ctx).Scan(&pending); cerr != nil {
			return nil, cerr
		}
		if pending > 0 {
			return nil, store.ErrNoneRunnable
		}
		return nil, store.ErrNotFound
	}
	return tk, err
}

const progressSQL = `UPDATE tasks SET progress = max(progress, min(?, 99)), updated_at = ?
	WHERE id = ? AND status = 'running'`

// TaskProgress raises a running task's progress, capped at 99.
func (s *Store) TaskProgress(ctx context.Context, p *store.TaskProgressParams) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		res, err := ex.stmt(ctx, s.ws.progress).ExecContext(ctx, int64(p.Progress), ms(p.Now), p.ID)
		return s.checkChanged(ctx, ex, res, err, p.ID)
	})
	return wrap(err, "set progress of task %s", p.ID)
}

const renewLeaseSQL = `UPDATE tasks SET lease_expires_at = ?
	WHERE id = ? AND status = 'running' AND lease_owner = ?`

const takeLeaseSQL = `UPDATE tasks SET lease_owner = ?, lease_expires_at = ?
	WHERE id = ? AND status = 'running'`

// TaskRenewLease extends the lease held by p.LeaseOwner, or takes it over.
func (s *Store) TaskRenewLease(ctx context.Context, p *store.TaskLeaseParams) error {
	if p.LeaseOwner == "" {
		return fmt.Errorf("sqlitestore: renew lease of task %s: no lease owner given: %w", p.ID, store.ErrConflict)
	}
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		var res sql.Result
		var err error
		if p.Takeover {
			res, err = ex.stmt(ctx, s.ws.takeLease).ExecContext(ctx, p.LeaseOwner, ms(p.Now.Add(p.LeaseTTL)), p.ID)
		} else {
			res, err = ex.stmt(ctx, s.ws.renewLease).ExecContext(ctx, ms(p.Now.Add(p.LeaseTTL)), p.ID, p.LeaseOwner)
		}
		return s.checkChanged(ctx, ex, res, err, p.ID)
	})
	return wrap(err, "renew lease of task %s", p.ID)
}

// checkChanged turns an UPDATE of task id that changed no row into
// ErrNotFound or ErrConflict.
func (s *Store) checkChanged(ctx context.Context, ex execer, res sql.Result, err error, id string) error {
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n > 0 {
			return nil
		}
	}
	if err == nil {
		err = s.missingOrConflict(ctx, ex, id)
	}
	return err
}

const taskStatusSQL = `SELECT status FROM tasks WHERE id = ?`

// missingOrConflict explains why a conditional change of task id matched no
// row: it does not exist, or it is in another state.
func (s *Store) missingOrConflict(ctx context.Context, ex execer, id string) error {
	var status task.Status
	if err := ex.stmt(ctx, s.ws.taskStatus).QueryRowContext(ctx, id).Scan(&status); err != nil {
		return err
	}
	return fmt.Errorf("%w: task is %s", store.ErrConflict, status)
}

// finishSQL ends a task in one of two statuses (:from1, :from2, the same
// one twice for a single status), held by :owner unless :owner is empty.
const finishSQL = `UPDATE tasks SET status = :to, result = :result, error = :error,
		finished_at = :now, updated_at = :now, lease_owner = '', lease_expires_at = 0,
		progress = CASE WHEN :to = 'completed' THEN 100 ELSE max(progress, min(:progress, 99)) END
	WHERE id = :id AND status IN (:from1, :from2) AND (:owner = '' OR lease_owner = :owner)
	RETURNING ` + taskCols

// TaskFinish moves a task from one of p.From to the final status p.To.
func (s *Store) TaskFinish(ctx context.Context, p *store.TaskFinishParams) (*task.Task, error) {
	if !p.To.Final() {
		return nil, fmt.Errorf("sqlitestore: finish task %s: %q is not a final status", p.ID, p.To)
	}
	result, err := marshalNull(p.Result)
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	taskErr, err := marshalNull(p.Error)
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	// Only pending and running tasks move, so from has at most two statuses.
	from := movableFrom(p.From, p.To)
	now := ms(p.Now)
	var tk *task.Task
	err = s.w.execLogged(ctx, func(ctx context.Context, ex execer) ([]event.Event, error) {
		if len(from) == 0 {
			return nil, s.missingOrConflict(ctx, ex, p.ID)
		}
		var err error
		tk, err = scanTask(ex.stmt(ctx, s.ws.finish).QueryRowContext(ctx,
			sql.Named("to", string(p.To)), sql.Named("result", result), sql.Named("error", taskErr),
			sql.Named("now", now), sql.Named("id", p.ID), sql.Named("from1", string(from[0])),
			sql.Named("from2", string(from[len(from)-1])), sql.Named("owner", p.LeaseOwner),
			sql.Named("progress", int64(p.Progress))))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, s.missingOrConflict(ctx, ex, p.ID)
		}
		if err != nil {
			return nil, err
		}
		if err := s.insertFiles(ctx, ex, p.Files); err != nil {
			return nil, err
		}
		// The events that report the change commit with it, stamped with
		// its time, and so do their webhook deliveries.
		evs, err := event.Final(tk)
		if err != nil {
			return nil, err
		}
		for i := range evs {
			evs[i].Time = now
		}
		if p.Also != nil {
			evs = append(evs, ownEvents(p.Also())...)
		}
		return s.logEvents(ctx, ex, evs...)
	})
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	return tk, nil
}

// movableFrom keeps the statuses of from that may move to `to`; a final
// status never moves.
func movableFrom(from []task.Status, to task.Status) []task.Status {
	out := make([]task.Status, 0, len(from))
	for _, st := range from {
		if task.CanMove(st, to) && !slices.Contains(out, st) {
			out = append(out, st)
		}
	}
	return out
}

// updateTask writes with run, a conditional UPDATE ... RETURNING taskCols
// of task id; no row means the task is missing or in another state. format
// names the operation, with %s for id.
func (s *Store) updateTask(ctx context.Context, id, format string, run func(ctx context.Context, ex execer) (*task.Task, error)) (*task.Task, error) {
	var tk *task.Task
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) (err error) {
		tk, err = run(ctx, ex)
		if errors.Is(err, sql.ErrNoRows) {
			err = s.missingOrConflict(ctx, ex, id)
		}
		return err
	})
	if err != nil {
		return nil, wrap(err, format, id)
	}
	return tk, nil
}

// updateStmt is the run of updateTask for one prepared statement.
func (s *Store) updateStmt(st *sql.Stmt, args ...any) func(ctx context.Context, ex execer) (*task.Task, error) {
	return func(ctx context.Context, ex execer) (*task.Task, error) {
		return scanTask(ex.stmt(ctx, st).QueryRowContext(ctx, args...))
	}
}

// requeueSQL returns a running task, held by :owner unless :owner is empty,
// to pending.
const requeueSQL = `UPDATE tasks SET status = 'pending', instance_id = '', lease_owner = '', lease_expires_at = 0,
		started_at = 0, updated_at = :now, attempts = max(attempts - :refund, 0),
		progress = max(progress, min(:progress, 99))
	WHERE id = :id AND status = 'running' AND (:owner = '' OR lease_owner = :owner)
	RETURNING ` + taskCols

// TaskRequeue returns a running task to pending, keeping its attempts
// (unless p.RefundAttempt) and its place in line (Seq).
func (s *Store) TaskRequeue(ctx context.Context, p *store.TaskRequeueParams) (*task.Task, error) {
	var refund int64
	if p.RefundAttempt {
		refund = 1
	}
	run := s.updateStmt(s.ws.requeue, sql.Named("now", ms(p.Now)),
		sql.Named("refund", refund), sql.Named("id", p.ID), sql.Named("owner", p.LeaseOwner),
		sql.Named("progress", int64(p.Progress)))
	if !p.LogEvents {
		return s.updateTask(ctx, p.ID, "requeue task %s", run)
	}
	return s.updateTaskLogged(ctx, p.ID, "requeue task %s", p.Now, run, event.Pending)
}

// updateTaskLogged is updateTask that also logs the events build makes of
// the updated task, stamped now, in the same write.
func (s *Store) updateTaskLogged(ctx context.Context, id, format string, now time.Time,
	run func(ctx context.Context, ex execer) (*task.Task, error), build func(*task.Task) ([]event.Event, error)) (*task.Task, error) {
	var tk *task.Task
	err := s.w.execLogged(ctx, func(ctx context.Context, ex execer) ([]event.Event, error) {
		var err error
		if tk, err = run(ctx, ex); errors.Is(err, sql.ErrNoRows) {
			err = s.missingOrConflict(ctx, ex, id)
		}
		if err != nil {
			return nil, err
		}
		evs, err := build(tk)
		if err != nil {
			return nil, err
		}
		for i := range evs {
			evs[i].Time = ms(now)
		}
		return s.logEvents(ctx, ex, evs...)
	})
	if err != nil {
		return nil, wrap(err, format, id)
	}
	return tk, nil
}

// requestCancelSQL cancels a pending task or flags a running one. SQLite
// evaluates every SET expression on the row as it was, so each CASE sees the
// old status.
const requestCancelSQL = `UPDATE tasks SET
		status = CASE status WHEN 'pending' THEN 'cancelled' ELSE status END,
		cancel_requested = CASE status WHEN 'running' THEN 1 ELSE cancel_requested END,
		finished_at = CASE status WHEN 'pending' THEN :now ELSE finished_at END,
		updated_at = :now
	WHERE id = :id AND status IN ('pending', 'running')
	RETURNING ` + taskCols

// TaskRequestCancel cancels a pending task or marks a running one CancelRequested.
func (s *Store) TaskRequestCancel(ctx context.Context, p *store.TaskCancelParams) (*task.Task, error) {
	run := s.updateStmt(s.ws.requestCancel, sql.Named("now", ms(p.Now)), sql.Named("id", p.ID))
	if !p.LogEvents {
		return s.updateTask(ctx, p.ID, "cancel task %s", run)
	}
	return s.updateTaskLogged(ctx, p.ID, "cancel task %s", p.Now, run, event.Cancel)
}

// TaskListRunning's filters, as bits of the index into readStmts.running.
const (
	runningByInstance = 1 << iota
	runningLeaseExpired
)

// runningSQL is TaskListRunning's query for one combination of filters.
func runningSQL(variant int) string {
	query := `SELECT ` + taskCols + ` FROM tasks WHERE status = 'running'`
	if variant&runningByInstance != 0 {
		query += ` AND instance_id = :instance`
	}
	if variant&runningLeaseExpired != 0 {
		query += ` AND lease_expires_at < :before`
	}
	return query + ` ORDER BY seq`
}

// TaskListRunning returns running tasks in claim order (Seq).
func (s *Store) TaskListRunning(ctx context.Context, p *store.TaskListRunningParams) ([]*task.Task, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list running tasks")
	}
	defer s.readGate.leave()
	variant := 0
	var args []any
	if p.InstanceID != "" {
		variant |= runningByInstance
		args = append(args, sql.Named("instance", p.InstanceID))
	}
	if !p.LeaseExpiredBefore.IsZero() {
		variant |= runningLeaseExpired
		args = append(args, sql.Named("before", ms(p.LeaseExpiredBefore)))
	}
	rows, err := s.rs.running[variant].QueryContext(ctx, args...)
	if err != nil {
		return nil, wrap(err, "list running tasks")
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, wrap(err, "list running tasks")
	}
	return tasks, nil
}
