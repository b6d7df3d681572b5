package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

const (
	// taskExpiredSQL walks the tasks_expired index from its oldest end.
	taskExpiredSQL = `SELECT id FROM tasks INDEXED BY tasks_expired
	WHERE status IN ('completed', 'failed', 'cancelled') AND pinned = 0 AND finished_at < ?
	ORDER BY finished_at, seq LIMIT ?`
	// fileExpiredSQL walks the files_expired index from its oldest end,
	// passing over the outputs of pinned tasks.
	fileExpiredSQL = `SELECT id FROM files INDEXED BY files_expired
	WHERE pinned = 0 AND created_at < ?
		AND (task_id = '' OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = files.task_id AND t.pinned = 1))
	ORDER BY created_at, id LIMIT ?`
	// taskDeleteSQL deletes a finished, unpinned task; its body goes with
	// it (ON DELETE CASCADE) and the status counts follow (trigger).
	taskDeleteSQL = `DELETE FROM tasks
	WHERE id = ? AND status IN ('completed', 'failed', 'cancelled') AND pinned = 0`
	// taskDeleteWhSubsSQL and taskDeleteWhDeliveriesSQL delete, with a
	// task, its own webhook subscriptions and its deliveries.
	taskDeleteWhSubsSQL       = `DELETE FROM webhook_subs WHERE task_id = ? AND task_id <> ''` // the partial index
	taskDeleteWhDeliveriesSQL = `DELETE FROM webhook_deliveries WHERE task_id = ?`
	taskPinnedSQL             = `SELECT status, pinned FROM tasks WHERE id = ?`
	taskPinSQL                = `UPDATE tasks SET pinned = ? WHERE id = ? RETURNING ` + taskCols
	filePinSQL                = `UPDATE files SET pinned = ? WHERE id = ? RETURNING ` + fileCols
)

// TaskExpired returns the oldest finished, unpinned tasks finished before p.Before.
func (s *Store) TaskExpired(ctx context.Context, p *store.ExpiredParams) ([]string, error) {
	ids, err := s.expired(ctx, taskExpiredSQL, p)
	return ids, wrap(err, "list expired tasks")
}

// FileExpired returns the oldest unpinned files created before p.Before.
func (s *Store) FileExpired(ctx context.Context, p *store.ExpiredParams) ([]string, error) {
	ids, err := s.expired(ctx, fileExpiredSQL, p)
	return ids, wrap(err, "list expired files")
}

func (s *Store) expired(ctx context.Context, query string, p *store.ExpiredParams) ([]string, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer s.readGate.leave()
	stmts, release, err := s.cachedStmts(ctx, query)
	if err != nil {
		return nil, err
	}
	defer release()
	rows, err := stmts[0].QueryContext(ctx, ms(p.Before), store.ExpiredLimit(p.Limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// TaskDelete deletes a finished, unpinned task, its webhook subscriptions
// and deliveries, in one transaction.
func (s *Store) TaskDelete(ctx context.Context, id string) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		err := deleted(ex.stmt(ctx, s.ws.taskDelete).ExecContext(ctx, id))
		if err == nil {
			if _, err := ex.stmt(ctx, s.ws.taskDeleteWhSubs).ExecContext(ctx, id); err != nil {
				return err
			}
			_, err = ex.stmt(ctx, s.ws.taskDeleteWhDeliveries).ExecContext(ctx, id)
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var status task.Status
		var pinned bool
		err = ex.stmt(ctx, s.ws.taskPinned).QueryRowContext(ctx, id).Scan(&status, &pinned)
		switch {
		case err != nil:
			return err
		case pinned:
			return fmt.Errorf("%w: task is pinned", store.ErrConflict)
		}
		return fmt.Errorf("%w: task is %s", store.ErrConflict, status)
	})
	return wrap(err, "delete task %s", id)
}

// TaskPin pins or unpins a task.
func (s *Store) TaskPin(ctx context.Context, p *store.PinParams) (*task.Task, error) {
	return s.updateTask(ctx, p.ID, "pin task %s", s.updateStmt(s.ws.taskPin, p.Pinned, p.ID))
}

// FilePin pins or unpins a file record.
func (s *Store) FilePin(ctx context.Context, p *store.PinParams) (*file.File, error) {
	var f *file.File
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) (err error) {
		f, err = scanFile(ex.stmt(ctx, s.ws.filePin).QueryRowContext(ctx, p.Pinned, p.ID))
		if errors.Is(err, sql.ErrNoRows) {
			err = store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, wrap(err, "pin file %s", p.ID)
	}
	return f, nil
}
