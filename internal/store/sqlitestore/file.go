package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

const (
	fileCols      = `id, owner, task_id, node_id, filename, content_type, size, created_at, pinned`
	fileInsertSQL = `INSERT INTO files (` + fileCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// fileKeepSQL inserts a record unless its id is stored (TaskFinishParams.Files).
	fileKeepSQL   = fileInsertSQL + ` ON CONFLICT (id) DO NOTHING`
	fileGetSQL    = `SELECT ` + fileCols + ` FROM files WHERE id = ?`
	fileDeleteSQL = `DELETE FROM files WHERE id = ?`
	fileExistsSQL = `SELECT count(*) FROM files WHERE id = ?`
	filePruneSQL  = `DELETE FROM files WHERE id = ? AND pinned = 0
		AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = files.task_id AND t.pinned = 1)`
)

// FileInsert adds a file record; a duplicate id is ErrConflict.
func (s *Store) FileInsert(ctx context.Context, f *file.File) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		_, err := ex.stmt(ctx, s.ws.fileInsert).ExecContext(ctx,
			f.ID, f.Owner, f.TaskID, f.NodeID, f.Filename, f.ContentType, f.Size, ms(f.CreatedAt), f.Pinned)
		return err
	})
	if err != nil {
		return wrap(err, "insert file %s", f.ID)
	}
	return nil
}

// insertFiles adds the records of files, keeping any already stored.
func (s *Store) insertFiles(ctx context.Context, ex execer, files []*file.File) error {
	for _, f := range files {
		_, err := ex.stmt(ctx, s.ws.fileKeep).ExecContext(ctx,
			f.ID, f.Owner, f.TaskID, f.NodeID, f.Filename, f.ContentType, f.Size, ms(f.CreatedAt), f.Pinned)
		if err != nil {
			return fmt.Errorf("insert file %s: %w", f.ID, err)
		}
	}
	return nil
}

func scanFile(sc scanner) (*file.File, error) {
	var f file.File
	var created int64
	if err := sc.Scan(&f.ID, &f.Owner, &f.TaskID, &f.NodeID, &f.Filename, &f.ContentType, &f.Size, &created, &f.Pinned); err != nil {
		return nil, err
	}
	f.CreatedAt = fromMS(created)
	return &f, nil
}

// FileGet returns one file record.
func (s *Store) FileGet(ctx context.Context, id string) (*file.File, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "get file %s", id)
	}
	defer s.readGate.leave()
	f, err := scanFile(s.rs.fileGet.QueryRowContext(ctx, id))
	if err != nil {
		return nil, wrap(err, "get file %s", id)
	}
	return f, nil
}

// FileList pages through files newest first (CreatedAt, then ID, descending).
func (s *Store) FileList(ctx context.Context, p *store.FileListParams) (*store.FileListResult, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list files")
	}
	defer s.readGate.leave()
	where, args := fileWhere(p)
	stmts, release, err := s.cachedStmts(ctx, `SELECT count(*) FROM files`+where,
		`SELECT `+fileCols+` FROM files`+where+` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`)
	if err != nil {
		return nil, wrap(err, "list files")
	}
	defer release()
	res := &store.FileListResult{}
	err = inTx(ctx, s.read, true, func(tx *sql.Tx) error {
		if err := tx.StmtContext(ctx, stmts[0]).QueryRowContext(ctx, args...).Scan(&res.Total); err != nil {
			return err
		}
		pageArgs := append(slices.Clip(args), store.PageLimit(p.Limit), max(p.Offset, 0))
		rows, err := tx.StmtContext(ctx, stmts[1]).QueryContext(ctx, pageArgs...)
		if err != nil {
			return err
		}
		res.Items, err = scanFiles(rows)
		return err
	})
	if err != nil {
		return nil, wrap(err, "list files")
	}
	return res, nil
}

// scanFiles reads every row of rows and closes it.
func scanFiles(rows *sql.Rows) ([]*file.File, error) {
	defer rows.Close()
	var out []*file.File
	for rows.Next() {
		f, err := scanFile(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// fileWhere filters by owner and task when they are set.
func fileWhere(p *store.FileListParams) (string, []any) {
	var conds []string
	var args []any
	if p.Owner != "" {
		conds, args = append(conds, "owner = ?"), append(args, p.Owner)
	}
	if p.TaskID != "" {
		conds, args = append(conds, "task_id = ?"), append(args, p.TaskID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// FileDelete removes a file record.
// FilePrune deletes a file record unless it or its task is pinned.
func (s *Store) FilePrune(ctx context.Context, id string) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		err := deleted(ex.stmt(ctx, s.ws.filePrune).ExecContext(ctx, id))
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var n int
		if err := ex.stmt(ctx, s.ws.fileExists).QueryRowContext(ctx, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: the file or its task is pinned", store.ErrConflict)
		}
		return store.ErrNotFound
	})
	return wrap(err, "prune file %s", id)
}

func (s *Store) FileDelete(ctx context.Context, id string) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		return deleted(ex.stmt(ctx, s.ws.fileDelete).ExecContext(ctx, id))
	})
	return wrap(err, "delete file %s", id)
}
