package redisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Fields of a file hash; the size is decimal bytes, the time Unix ms.
const (
	ffID          = "id"
	ffOwner       = "owner"
	ffTask        = "task"
	ffNode        = "node"
	ffFilename    = "filename"
	ffContentType = "ctype"
	ffSize        = "size"
	ffCreated     = "created"
	ffPinned      = "pinned" // "1" when pinned; absent otherwise
)

// decodeFile builds a file record from its hash fields.
func decodeFile(m map[string]string) (*file.File, error) {
	r := &fieldReader{m: m}
	f := &file.File{
		ID: m[ffID], Owner: m[ffOwner], TaskID: m[ffTask], NodeID: m[ffNode], Filename: m[ffFilename],
		ContentType: m[ffContentType], Size: r.int(ffSize), CreatedAt: r.time(ffCreated), Pinned: m[ffPinned] == "1",
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode file %s: %w", f.ID, r.err)
	}
	return f, nil
}

// FileInsert adds a file record and indexes it newest first, globally, by
// owner and by task; a duplicate id is store.ErrConflict.
func (s *Store) FileInsert(ctx context.Context, f *file.File) error {
	created := msArg(f.CreatedAt)
	keys := []string{s.keys.file(f.ID), s.keys.files(), s.keys.ownerFiles(f.Owner), s.keys.taskFiles(f.TaskID), s.keys.fileBytes(),
		s.keys.retentionFiles(), s.keys.task(f.TaskID)}
	args := []any{f.ID, created, f.Owner, f.TaskID, f.Size,
		ffID, f.ID, ffOwner, f.Owner, ffTask, f.TaskID, ffNode, f.NodeID, ffFilename, f.Filename,
		ffContentType, f.ContentType, ffSize, strconv.FormatInt(f.Size, 10), ffCreated, created}
	if f.Pinned {
		args = append(args, ffPinned, "1")
	}
	err := insertFileScript.Run(ctx, s.rdb, keys, args...).Err()
	return wrap(err, "insert file %s", f.ID)
}

// FileGet returns one file record.
func (s *Store) FileGet(ctx context.Context, id string) (*file.File, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.file(id)).Result()
	if err == nil && len(m) == 0 {
		err = redis.Nil
	}
	if err != nil {
		return nil, wrap(err, "get file %s", id)
	}
	f, err := decodeFile(m)
	return f, wrap(err, "get file %s", id)
}

// FileList pages through files newest first (CreatedAt, then ID,
// descending). With a TaskID the task's files are read and filtered by
// owner; otherwise the page is one range of the owner's or all files.
func (s *Store) FileList(ctx context.Context, p *store.FileListParams) (*store.FileListResult, error) {
	index, owner := s.keys.files(), ""
	switch {
	case p.TaskID != "":
		index, owner = s.keys.taskFiles(p.TaskID), p.Owner
	case p.Owner != "":
		index = s.keys.ownerFiles(p.Owner)
	}
	reply, err := listFilesScript.Run(ctx, s.rdb, []string{index},
		s.keys.prefix, max(p.Offset, 0), store.PageLimit(p.Limit), owner).Slice()
	if err != nil {
		return nil, wrap(err, "list files")
	}
	res, err := decodeFilePage(reply)
	return res, wrap(err, "list files")
}

// decodeFilePage reads listFilesScript's reply.
func decodeFilePage(reply []any) (*store.FileListResult, error) {
	if len(reply) == 0 {
		return nil, fmt.Errorf("empty reply")
	}
	total, _ := reply[0].(int64)
	res := &store.FileListResult{Total: int(total), Items: make([]*file.File, 0, len(reply)-1)}
	for _, item := range reply[1:] {
		m, err := pairs(item)
		if err != nil {
			return nil, err
		}
		f, err := decodeFile(m)
		if err != nil {
			return nil, err
		}
		res.Items = append(res.Items, f)
	}
	return res, nil
}

// FileDelete removes a file record and its index entries.
// FilePrune deletes a file record unless it or its task is pinned.
func (s *Store) FilePrune(ctx context.Context, id string) error {
	err := deleteFileScript.Run(ctx, s.rdb, []string{s.keys.file(id)}, s.keys.prefix, id, "1").Err()
	return wrap(err, "prune file %s", id)
}

func (s *Store) FileDelete(ctx context.Context, id string) error {
	err := deleteFileScript.Run(ctx, s.rdb, []string{s.keys.file(id)}, s.keys.prefix, id).Err()
	return wrap(err, "delete file %s", id)
}

// UsageGet returns an owner's pending tasks (the length of their queue) and
// stored bytes.
func (s *Store) UsageGet(ctx context.Context, p *store.UsageGetParams) (store.Usage, error) {
	keys := []string{s.keys.ownerQueue(p.Owner), s.keys.fileBytes(), s.keys.ownerFiles(p.Owner)}
	reply, err := usageScript.Run(ctx, s.rdb, keys, s.keys.prefix, p.Owner).Int64Slice()
	if err == nil && len(reply) != 2 {
		err = fmt.Errorf("usage reply has %d values, want 2", len(reply))
	}
	if err != nil {
		return store.Usage{}, wrap(err, "get usage of %s", p.Owner)
	}
	return store.Usage{Pending: int(reply[0]), StoredBytes: reply[1]}, nil
}
