package sqlitestore

import (
	"context"
	"database/sql"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

const fileCols = `id, owner, task_id, node_id, filename, content_type, size, created_at`

// FileInsert adds a file record; a duplicate id is ErrConflict.
func (s *Store) FileInsert(ctx context.Context, f *file.File) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO files (`+fileCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		f.ID, f.Owner, f.TaskID, f.NodeID, f.Filename, f.ContentType, f.Size, ms(f.CreatedAt))
	return wrap(err, "insert file %s", f.ID)
}

func scanFile(sc scanner) (*file.File, error) {
	var f file.File
	var created int64
	if err := sc.Scan(&f.ID, &f.Owner, &f.TaskID, &f.NodeID, &f.Filename, &f.ContentType, &f.Size, &created); err != nil {
		return nil, err
	}
	f.CreatedAt = fromMS(created)
	return &f, nil
}

// FileGet returns one file record.
func (s *Store) FileGet(ctx context.Context, id string) (*file.File, error) {
	f, err := scanFile(s.read.QueryRowContext(ctx, `SELECT `+fileCols+` FROM files WHERE id = ?`, id))
	return f, wrap(err, "get file %s", id)
}

// FileList pages through files newest first (CreatedAt, then ID, descending).
func (s *Store) FileList(ctx context.Context, p *store.FileListParams) (*store.FileListResult, error) {
	where, args := fileWhere(p)
	res := &store.FileListResult{}
	err := inTx(ctx, s.read, true, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM files`+where, args...).Scan(&res.Total); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+fileCols+` FROM files`+where+
			` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, append(args, store.PageLimit(p.Limit), max(p.Offset, 0))...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			f, err := scanFile(rows)
			if err != nil {
				return err
			}
			res.Items = append(res.Items, f)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap(err, "list files")
	}
	return res, nil
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
func (s *Store) FileDelete(ctx context.Context, id string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM files WHERE id = ?`, id)
	return wrap(deleted(res, err), "delete file %s", id)
}
