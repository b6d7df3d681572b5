package storetest

import (
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func fileCases() []testCase {
	return []testCase{
		{"InsertGet", testFileInsertGet},
		{"InsertDuplicate", testFileInsertDuplicate},
		{"GetMissing", testFileGetMissing},
		{"List", testFileList},
		{"ListPaging", testFileListPaging},
		{"Delete", testFileDelete},
	}
}

// newFile inserts a file record created at second sec.
func newFile(t *testing.T, s store.Store, owner, taskID string, sec int) *file.File {
	t.Helper()
	f := &file.File{
		ID: newID(), Owner: owner, TaskID: taskID, Filename: "out.png",
		ContentType: "image/png", Size: 1234, CreatedAt: at(sec),
	}
	if taskID != "" {
		f.NodeID = "9"
	}
	must(t, "FileInsert", s.FileInsert(t.Context(), f))
	return f
}

func fileIDs(files []*file.File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.ID
	}
	return out
}

func testFileInsertGet(t *testing.T, s store.Store) {
	want := &file.File{
		ID: newID(), Owner: "alice", TaskID: newID(), NodeID: "12", Filename: "clip 01.mp4",
		ContentType: "video/mp4", Size: 5 << 30, CreatedAt: at(2).Add(7e6),
	}
	must(t, "FileInsert", s.FileInsert(t.Context(), want))
	got, err := s.FileGet(t.Context(), want.ID)
	must(t, "FileGet", err)
	diff(t, "FileGet", want, got)
	checkUTC(t, "CreatedAt", got.CreatedAt)

	upload := &file.File{ID: newID(), Owner: "bob", Filename: "in.jpg", ContentType: "image/jpeg", Size: 10, CreatedAt: at(3)}
	must(t, "FileInsert upload", s.FileInsert(t.Context(), upload))
	got, err = s.FileGet(t.Context(), upload.ID)
	must(t, "FileGet upload", err)
	diff(t, "FileGet upload", upload, got)
}

func testFileInsertDuplicate(t *testing.T, s store.Store) {
	f := newFile(t, s, "alice", "", 1)
	dup := *f
	dup.Owner, dup.Filename = "mallory", "evil.png"
	wantErr(t, "duplicate FileInsert", s.FileInsert(t.Context(), &dup), store.ErrConflict)
	got, err := s.FileGet(t.Context(), f.ID)
	must(t, "FileGet", err)
	diff(t, "file after duplicate insert", f, got)
}

func testFileGetMissing(t *testing.T, s store.Store) {
	_, err := s.FileGet(t.Context(), newID())
	wantErr(t, "FileGet missing", err, store.ErrNotFound)
}

func testFileList(t *testing.T, s store.Store) {
	task1, task2 := newID(), newID()
	a1 := newFile(t, s, "alice", "", 1)
	a2 := newFile(t, s, "alice", task1, 4)
	b1 := newFile(t, s, "bob", task2, 2)
	a3 := newFile(t, s, "alice", task1, 3)
	b2 := newFile(t, s, "bob", "", 5)
	cases := []struct {
		name string
		p    store.FileListParams
		want []string
	}{
		{"all", store.FileListParams{}, []string{b2.ID, a2.ID, a3.ID, b1.ID, a1.ID}},
		{"owner", store.FileListParams{Owner: "alice"}, []string{a2.ID, a3.ID, a1.ID}},
		{"task", store.FileListParams{TaskID: task1}, []string{a2.ID, a3.ID}},
		{"owner and task", store.FileListParams{Owner: "bob", TaskID: task2}, []string{b1.ID}},
		{"owner of other task", store.FileListParams{Owner: "bob", TaskID: task1}, nil},
		{"unknown owner", store.FileListParams{Owner: "carol"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.FileList(t.Context(), &c.p)
			must(t, "FileList", err)
			diff(t, "FileList ids", c.want, fileIDs(res.Items))
			if res.Total != len(c.want) {
				t.Errorf("Total = %d, want %d", res.Total, len(c.want))
			}
		})
	}
	res, err := s.FileList(t.Context(), &store.FileListParams{Owner: "bob", TaskID: task2})
	must(t, "FileList", err)
	diff(t, "FileList item", []*file.File{b1}, res.Items)
}

func testFileListPaging(t *testing.T, s store.Store) {
	const n = store.MaxListLimit + 5
	newest := make([]string, n)
	for i := range n {
		newest[n-1-i] = newFile(t, s, "alice", "", i).ID
	}
	cases := []struct {
		name          string
		limit, offset int
		want          []string
	}{
		{"default limit", 0, 0, newest[:store.DefaultListLimit]},
		{"page", 10, 30, newest[30:40]},
		{"last page", 10, n - 3, newest[n-3:]},
		{"past the end", 10, n, nil},
		{"negative offset", 3, -2, newest[:3]},
		{"capped", 1000, 0, newest[:store.MaxListLimit]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.FileList(t.Context(), &store.FileListParams{Limit: c.limit, Offset: c.offset})
			must(t, "FileList", err)
			diff(t, "page", c.want, fileIDs(res.Items))
			if res.Total != n {
				t.Errorf("Total = %d, want %d", res.Total, n)
			}
		})
	}
}

func testFileDelete(t *testing.T, s store.Store) {
	gone := newFile(t, s, "alice", "", 1)
	kept := newFile(t, s, "alice", "", 2)
	must(t, "FileDelete", s.FileDelete(t.Context(), gone.ID))
	_, err := s.FileGet(t.Context(), gone.ID)
	wantErr(t, "FileGet deleted", err, store.ErrNotFound)
	wantErr(t, "FileDelete again", s.FileDelete(t.Context(), gone.ID), store.ErrNotFound)

	res, err := s.FileList(t.Context(), &store.FileListParams{})
	must(t, "FileList", err)
	diff(t, "FileList after delete", []string{kept.ID}, fileIDs(res.Items))
	if res.Total != 1 {
		t.Errorf("Total = %d, want 1", res.Total)
	}
}
