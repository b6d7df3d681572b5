package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// claimSQL takes the head of the queue in one statement on the single writer:
// the subquery reads the first entry of the partial index tasks_claim, so a
// claim costs the same with ten pending tasks or a million. INDEXED BY pins
// the index: without statistics the planner prefers tasks_status_created
// plus a sort of every pending task.
const claimSQL = `UPDATE tasks SET status = 'running', instance_id = :instance, attempts = attempts + 1,
		started_at = :now, updated_at = :now, lease_owner = :owner, lease_expires_at = :expires
	WHERE seq = (SELECT seq FROM tasks INDEXED BY tasks_claim WHERE status = 'pending' ORDER BY priority DESC, seq LIMIT 1)
	RETURNING ` + taskCols

// TaskClaim marks the first pending task in claim order running on p.InstanceID.
func (s *Store) TaskClaim(ctx context.Context, p *store.TaskClaimParams) (*task.Task, error) {
	tk, err := scanTask(s.write.QueryRowContext(ctx, claimSQL,
		sql.Named("instance", p.InstanceID), sql.Named("owner", p.LeaseOwner),
		sql.Named("now", ms(p.Now)), sql.Named("expires", ms(p.Now.Add(p.LeaseTTL)))))
	return tk, wrap(err, "claim task for %s", p.InstanceID)
}

// TaskProgress raises a running task's progress, capped at 99.
func (s *Store) TaskProgress(ctx context.Context, p *store.TaskProgressParams) error {
	res, err := s.write.ExecContext(ctx, `UPDATE tasks SET progress = max(progress, min(?, 99)), updated_at = ?
		WHERE id = ? AND status = 'running'`, p.Progress, ms(p.Now), p.ID)
	return s.checkChanged(ctx, res, err, p.ID, "set progress of task %s", p.ID)
}

// TaskRenewLease extends the lease held by p.LeaseOwner.
func (s *Store) TaskRenewLease(ctx context.Context, p *store.TaskLeaseParams) error {
	res, err := s.write.ExecContext(ctx, `UPDATE tasks SET lease_expires_at = ?
		WHERE id = ? AND status = 'running' AND lease_owner = ?`, ms(p.Now.Add(p.LeaseTTL)), p.ID, p.LeaseOwner)
	return s.checkChanged(ctx, res, err, p.ID, "renew lease of task %s", p.ID)
}

// checkChanged turns an UPDATE that changed no row into ErrNotFound or
// ErrConflict.
func (s *Store) checkChanged(ctx context.Context, res sql.Result, err error, id, format string, args ...any) error {
	if err != nil {
		return wrap(err, format, args...)
	}
	n, err := res.RowsAffected()
	if err != nil || n > 0 {
		return wrap(err, format, args...)
	}
	return wrap(s.missingOrConflict(ctx, id), format, args...)
}

// missingOrConflict explains why a conditional change of task id matched no
// row: it does not exist, or it is in another state.
func (s *Store) missingOrConflict(ctx context.Context, id string) error {
	var status task.Status
	err := s.write.QueryRowContext(ctx, `SELECT status FROM tasks WHERE id = ?`, id).Scan(&status)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: task is %s", store.ErrConflict, status)
}

// TaskFinish moves a task from one of p.From to the final status p.To.
func (s *Store) TaskFinish(ctx context.Context, p *store.TaskFinishParams) (*task.Task, error) {
	if !p.To.Final() {
		return nil, fmt.Errorf("sqlitestore: finish task %s: %q is not a final status", p.ID, p.To)
	}
	from := movableFrom(p.From, p.To)
	if len(from) == 0 {
		return nil, wrap(s.missingOrConflict(ctx, p.ID), "finish task %s", p.ID)
	}
	result, err := marshalNull(p.Result)
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	taskErr, err := marshalNull(p.Error)
	if err != nil {
		return nil, wrap(err, "finish task %s", p.ID)
	}
	query := `UPDATE tasks SET status = ?, result = ?, error = ?, finished_at = ?, updated_at = ?,
			lease_owner = '', lease_expires_at = 0,
			progress = CASE WHEN ? = 'completed' THEN 100 ELSE progress END
		WHERE id = ? AND status IN (` + placeholders(len(from)) + `)`
	now := ms(p.Now)
	args := []any{string(p.To), result, taskErr, now, now, string(p.To), p.ID}
	for _, st := range from {
		args = append(args, string(st))
	}
	if p.LeaseOwner != "" {
		query += ` AND lease_owner = ?`
		args = append(args, p.LeaseOwner)
	}
	return s.updateTask(ctx, p.ID, query+` RETURNING `+taskCols, args, "finish task %s", p.ID)
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

// updateTask runs a conditional UPDATE ... RETURNING taskCols; no row means
// the task is missing or in another state.
func (s *Store) updateTask(ctx context.Context, id, query string, args []any, format string, fargs ...any) (*task.Task, error) {
	tk, err := scanTask(s.write.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = s.missingOrConflict(ctx, id)
	}
	if err != nil {
		return nil, wrap(err, format, fargs...)
	}
	return tk, nil
}

// TaskRequeue returns a running task to pending, keeping its attempts
// (unless p.RefundAttempt) and its place in line (Seq).
func (s *Store) TaskRequeue(ctx context.Context, p *store.TaskRequeueParams) (*task.Task, error) {
	refund := 0
	if p.RefundAttempt {
		refund = 1
	}
	query := `UPDATE tasks SET status = 'pending', instance_id = '', lease_owner = '', lease_expires_at = 0,
			started_at = 0, updated_at = ?, attempts = max(attempts - ?, 0)
		WHERE id = ? AND status = 'running'`
	args := []any{ms(p.Now), refund, p.ID}
	if p.LeaseOwner != "" {
		query += ` AND lease_owner = ?`
		args = append(args, p.LeaseOwner)
	}
	return s.updateTask(ctx, p.ID, query+` RETURNING `+taskCols, args, "requeue task %s", p.ID)
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
	args := []any{sql.Named("now", ms(p.Now)), sql.Named("id", p.ID)}
	return s.updateTask(ctx, p.ID, requestCancelSQL, args, "cancel task %s", p.ID)
}

// TaskListRunning returns running tasks in claim order (Seq).
func (s *Store) TaskListRunning(ctx context.Context, p *store.TaskListRunningParams) ([]*task.Task, error) {
	query := `SELECT ` + taskCols + ` FROM tasks WHERE status = 'running'`
	var args []any
	if p.InstanceID != "" {
		query += ` AND instance_id = ?`
		args = append(args, p.InstanceID)
	}
	if !p.LeaseExpiredBefore.IsZero() {
		query += ` AND lease_expires_at < ?`
		args = append(args, ms(p.LeaseExpiredBefore))
	}
	rows, err := s.read.QueryContext(ctx, query+` ORDER BY seq`, args...)
	if err != nil {
		return nil, wrap(err, "list running tasks")
	}
	tasks, err := scanTasks(rows)
	return tasks, wrap(err, "list running tasks")
}
