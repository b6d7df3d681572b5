package retention_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/blob/s3test"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/retention"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// now is the fixed clock of the tests; "old" records are two days older.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// stores opens each store implementation for a test.
var stores = map[string]func(t *testing.T) store.Store{
	"sqlite": func(t *testing.T) store.Store {
		s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
	"redis": func(t *testing.T) store.Store {
		u := redistest.URL(t)
		s, err := redisstore.Open(context.Background(), u, redisstore.WithPrefix(redistest.Prefix(t, u)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
}

func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { f(t, open(t)) })
	}
}

// fixture holds a store and blob store with records of every kind.
type fixture struct {
	st store.Store
	bl blob.Store
}

func newFixture(t *testing.T, st store.Store) *fixture {
	bl, err := blob.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, bl: bl}
}

// finished stores a task created at created and finished (failed) at
// finished; a zero finished leaves it pending.
func (f *fixture) task(t *testing.T, id string, created, finished time.Time) {
	t.Helper()
	ctx := t.Context()
	_, err := f.st.TaskInsert(ctx, &store.TaskInsertParams{ID: id, Owner: "alice", Workflow: []byte(`{}`), Now: created})
	if err != nil {
		t.Fatal(err)
	}
	if finished.IsZero() {
		return
	}
	_, err = f.st.TaskFinish(ctx, &store.TaskFinishParams{ID: id, From: []task.Status{task.StatusPending},
		To: task.StatusFailed, Now: finished})
	if err != nil {
		t.Fatal(err)
	}
}

// file stores a file record and its bytes.
func (f *fixture) file(t *testing.T, id, taskID string, created time.Time) {
	t.Helper()
	ctx := t.Context()
	if _, err := f.bl.Put(ctx, id, strings.NewReader("bytes of "+id), 0); err != nil {
		t.Fatal(err)
	}
	err := f.st.FileInsert(ctx, &file.File{ID: id, Owner: "alice", TaskID: taskID, Filename: "a.png",
		ContentType: "image/png", Size: int64(len("bytes of " + id)), CreatedAt: created})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) taskExists(t *testing.T, id string) bool {
	t.Helper()
	_, err := f.st.TaskGet(t.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// fileExists reports whether the record exists, and fails the test when
// the bytes do not follow it.
func (f *fixture) fileExists(t *testing.T, id string) bool {
	t.Helper()
	_, err := f.st.FileGet(t.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	rec := err == nil
	b, err := f.bl.Open(t.Context(), id)
	if err == nil {
		b.Close()
	} else if !errors.Is(err, blob.ErrNotFound) {
		t.Fatal(err)
	}
	if bytes := err == nil; bytes != rec {
		t.Errorf("file %s: record kept %v, bytes kept %v", id, rec, bytes)
	}
	return rec
}

type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) Pruned(kind string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind] += n
}

// TestPruneOldAndNothingYounger: a pass deletes the finished tasks and the
// files older than their retention, with the tasks' outputs, records and
// bytes; it keeps everything younger, every pinned task (and its outputs)
// and file, and pending tasks whatever their age.
func TestPruneOldAndNothingYounger(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st)
		ctx := t.Context()
		old, young := now.Add(-48*time.Hour), now.Add(-10*time.Minute)
		for _, id := range []string{"old-1", "old-2", "old-3", "old-4", "old-5"} { // more than a batch
			f.task(t, id, old.Add(-time.Minute), old)
			f.file(t, id+"-out", id, old)
		}
		f.file(t, "old-1-pinned-out", "old-1", old)
		f.task(t, "young", old, young) // created long ago, finished lately
		f.file(t, "young-out", "young", young)
		f.task(t, "pending", old, time.Time{})
		f.task(t, "pinned", old, old)
		f.file(t, "pinned-out", "pinned", old)
		f.file(t, "old-upload", "", old)
		f.file(t, "young-upload", "", young)
		f.file(t, "pinned-upload", "", old)
		for _, p := range []func() error{
			func() error { _, err := st.TaskPin(ctx, &store.PinParams{ID: "pinned", Pinned: true}); return err },
			func() error {
				_, err := st.FilePin(ctx, &store.PinParams{ID: "pinned-upload", Pinned: true})
				return err
			},
			func() error {
				_, err := st.FilePin(ctx, &store.PinParams{ID: "old-1-pinned-out", Pinned: true})
				return err
			},
		} {
			if err := p(); err != nil {
				t.Fatal(err)
			}
		}

		var c counter
		p := retention.New(retention.Options{Store: st, Blob: f.bl, Counter: &c, Now: func() time.Time { return now },
			Pause: time.Millisecond}, retention.Settings{Tasks: 24 * time.Hour, Files: 24 * time.Hour, Batch: 2})
		res, err := p.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (retention.Result{Tasks: 5, Files: 6}); res != want {
			t.Errorf("pass deleted %+v, want %+v", res, want)
		}
		if c.n[retention.KindTask] != 5 || c.n[retention.KindFile] != 6 {
			t.Errorf("counted %v", c.n)
		}
		for _, id := range []string{"old-1", "old-2", "old-3", "old-4", "old-5"} {
			if f.taskExists(t, id) {
				t.Errorf("old finished task %s kept", id)
			}
			if f.fileExists(t, id+"-out") {
				t.Errorf("output of old task %s kept", id)
			}
		}
		if f.fileExists(t, "old-upload") {
			t.Error("old upload kept")
		}
		for _, id := range []string{"young", "pending", "pinned"} {
			if !f.taskExists(t, id) {
				t.Errorf("task %s deleted", id)
			}
		}
		for _, id := range []string{"young-out", "pinned-out", "young-upload", "pinned-upload", "old-1-pinned-out"} {
			if !f.fileExists(t, id) {
				t.Errorf("file %s deleted", id)
			}
		}
		if tk, err := st.TaskGet(ctx, "pending"); err != nil || tk.Status != task.StatusPending {
			t.Errorf("pending task: %v, %v", tk, err)
		}

		// A second pass finds nothing more.
		if res, err := p.Prune(ctx); err != nil || res != (retention.Result{}) {
			t.Errorf("second pass deleted %+v, %v", res, err)
		}
	})
}

// TestPruneKeepsFilesWithoutFileRetention: with only a task retention,
// old uploads stay, and so do the outputs of tasks that stay.
func TestPruneKeepsFilesWithoutFileRetention(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st)
		old := now.Add(-48 * time.Hour)
		f.task(t, "old", old, old)
		f.file(t, "old-out", "old", old)
		f.task(t, "kept", old, now.Add(-time.Hour))
		f.file(t, "kept-out", "kept", old)
		f.file(t, "old-upload", "", old)
		p := retention.New(retention.Options{Store: st, Blob: f.bl, Now: func() time.Time { return now }},
			retention.Settings{Tasks: 24 * time.Hour, Batch: 10})
		if _, err := p.Prune(t.Context()); err != nil {
			t.Fatal(err)
		}
		if f.taskExists(t, "old") || f.fileExists(t, "old-out") {
			t.Error("old task or its output kept")
		}
		if !f.taskExists(t, "kept") || !f.fileExists(t, "kept-out") || !f.fileExists(t, "old-upload") {
			t.Error("a young task, its output or an upload deleted")
		}
	})
}

// TestPruneTwoReplicasAtOnce: two pruners on one store (two replicas)
// delete each record once between them, and neither fails.
func TestPruneTwoReplicasAtOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st)
		old := now.Add(-48 * time.Hour)
		const n = 40
		for i := range n {
			id := fmt.Sprintf("t%02d", i)
			f.task(t, id, old, old.Add(time.Duration(i)*time.Second))
			f.file(t, id+"-out", id, old)
		}
		settings := retention.Settings{Tasks: 24 * time.Hour, Files: 24 * time.Hour, Batch: 3}
		var wg sync.WaitGroup
		results := make([]retention.Result, 2)
		errs := make([]error, 2)
		for i := range 2 {
			p := retention.New(retention.Options{Store: st, Blob: f.bl, Now: func() time.Time { return now }, Pause: time.Millisecond}, settings)
			wg.Go(func() { results[i], errs[i] = p.Prune(t.Context()) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if tasks, files := results[0].Tasks+results[1].Tasks, results[0].Files+results[1].Files; tasks != n || files != n {
			t.Errorf("the two deleted %d tasks and %d files, want %d of each", tasks, files, n)
		}
		left, err := st.TaskList(t.Context(), &store.TaskListParams{})
		if err != nil || left.Total != 0 {
			t.Errorf("tasks left: %v, %v", left, err)
		}
	})
}

// TestRunPrunesAndStops: Run prunes at start, again after SetSettings, and
// returns when its context ends.
func TestRunPrunesAndStops(t *testing.T) {
	st := stores["sqlite"](t)
	f := newFixture(t, st)
	old := now.Add(-48 * time.Hour)
	f.task(t, "old", old, old)
	f.file(t, "old-upload", "", old)
	p := retention.New(retention.Options{Store: st, Blob: f.bl, Now: func() time.Time { return now }},
		retention.Settings{Tasks: 24 * time.Hour, Interval: time.Hour, Batch: 10})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, func() bool { return !f.taskExists(t, "old") })
	if !f.fileExists(t, "old-upload") {
		t.Fatal("upload deleted without a file retention")
	}
	p.SetSettings(retention.Settings{Tasks: 24 * time.Hour, Files: 24 * time.Hour, Interval: time.Hour, Batch: 10})
	waitFor(t, func() bool { _, err := st.FileGet(t.Context(), "old-upload"); return errors.Is(err, store.ErrNotFound) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f.fileExists(t, "old-upload") {
		t.Fatal("old upload kept")
	}
}

// waitFor polls cond for up to a generous minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within a minute")
}

// TestPruneS3: with the S3 file store, the bytes of pruned files leave the
// bucket, and those of kept files stay.
func TestPruneS3(t *testing.T) {
	srv := s3test.Start(t)
	f := &fixture{st: stores["sqlite"](t), bl: srv.Store(t, "fleet/")}
	old := now.Add(-48 * time.Hour)
	f.task(t, "old", old, old)
	f.file(t, "old-out", "old", old)
	f.file(t, "old-upload", "", old)
	f.file(t, "young-upload", "", now.Add(-time.Minute))
	p := retention.New(retention.Options{Store: f.st, Blob: f.bl, Now: func() time.Time { return now }},
		retention.Settings{Tasks: 24 * time.Hour, Files: 24 * time.Hour, Batch: 10})
	res, err := p.Prune(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := (retention.Result{Tasks: 1, Files: 2}); res != want {
		t.Errorf("pass deleted %+v, want %+v", res, want)
	}
	for id, kept := range map[string]bool{"old-out": false, "old-upload": false, "young-upload": true} {
		if got := f.fileExists(t, id); got != kept {
			t.Errorf("file %s kept %v, want %v", id, got, kept)
		}
	}
}

// pinningStore pins a task the moment the pruner first deletes one of
// its file records, as a user could in the middle of a pass.
type pinningStore struct {
	store.Store
	task string
	once sync.Once
}

func (s *pinningStore) pin(ctx context.Context) {
	s.once.Do(func() {
		if _, err := s.Store.TaskPin(ctx, &store.PinParams{ID: s.task, Pinned: true}); err != nil {
			panic(err)
		}
	})
}

func (s *pinningStore) FileDelete(ctx context.Context, id string) error {
	s.pin(ctx)
	return s.Store.FileDelete(ctx, id)
}

func (s *pinningStore) FilePrune(ctx context.Context, id string) error {
	s.pin(ctx)
	return s.Store.FilePrune(ctx, id)
}

// TestPinDuringAPassKeepsEverything: a task pinned while the pruner
// deletes its outputs keeps them all, records and bytes, and itself.
func TestPinDuringAPassKeepsEverything(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st)
		old := now.Add(-48 * time.Hour)
		f.task(t, "late-pin", old, old)
		f.file(t, "out-1", "late-pin", old)
		f.file(t, "out-2", "late-pin", old)
		ps := &pinningStore{Store: st, task: "late-pin"}
		p := retention.New(retention.Options{Store: ps, Blob: f.bl, Now: func() time.Time { return now }, Pause: time.Millisecond},
			retention.Settings{Tasks: 24 * time.Hour, Files: 24 * time.Hour, Batch: 10})
		if _, err := p.Prune(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !f.taskExists(t, "late-pin") {
			t.Error("the task pinned during the pass was deleted")
		}
		for _, id := range []string{"out-1", "out-2"} {
			if !f.fileExists(t, id) {
				t.Errorf("output %s of the task pinned during the pass was deleted", id)
			}
			if _, err := f.bl.Open(t.Context(), id); err != nil {
				t.Errorf("the bytes of output %s: %v", id, err)
			}
		}
	})
}
