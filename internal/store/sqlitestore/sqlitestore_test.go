package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/storetest"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openFile opens a store on a new file in the test's temp dir.
func openFile(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "comfyfleet.db"), opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openFile(t) })
}

func TestConformanceMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.Context(), ":memory:")
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestReopen closes the database and opens the same file again: everything
// written is still there.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "comfyfleet.db")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	pending, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: "t1", Owner: "alice", Priority: 3, Workflow: []byte(`{"1":{}}`), Now: now})
	mustOK(t, err)
	_, err = s.TaskInsert(ctx, &store.TaskInsertParams{ID: "t2", Workflow: []byte(`{}`), Priority: 9, Now: now})
	mustOK(t, err)
	running, err := s.TaskClaim(ctx, &store.TaskClaimParams{InstanceID: "i:1", LeaseOwner: "r", LeaseTTL: time.Minute, Now: now})
	mustOK(t, err)
	inst, err := s.InstanceUpdate(ctx, &store.InstanceUpdateParams{ID: "i:1", Enabled: new(bool)})
	mustOK(t, err)
	f := &file.File{ID: "f1", Owner: "alice", Filename: "a.png", ContentType: "image/png", Size: 3, CreatedAt: now}
	mustOK(t, s.FileInsert(ctx, f))
	mustOK(t, s.ConfigPut(ctx, []byte(`{"a":1}`)))
	mustOK(t, s.Close())

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for _, want := range []*task.Task{pending, running} {
		got, err := s.TaskGet(ctx, want.ID)
		mustOK(t, err)
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("task %s after reopen (-want +got):\n%s", want.ID, d)
		}
	}
	gotInst, err := s.InstanceGet(ctx, "i:1")
	mustOK(t, err)
	gotFile, err := s.FileGet(ctx, "f1")
	mustOK(t, err)
	doc, err := s.ConfigGet(ctx)
	mustOK(t, err)
	if d := cmp.Diff([]any{inst, f, `{"a":1}`}, []any{gotInst, gotFile, string(doc)}); d != "" {
		t.Errorf("after reopen (-want +got):\n%s", d)
	}
	next, err := s.TaskInsert(ctx, &store.TaskInsertParams{ID: "t3", Workflow: []byte(`{}`), Now: now})
	mustOK(t, err)
	if next.Seq <= running.Seq {
		t.Errorf("Seq after reopen = %d, want > %d", next.Seq, running.Seq)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPragmas(t *testing.T) {
	s := openFile(t)
	cases := []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.write, "journal_mode", "wal"},
		{s.write, "synchronous", "2"}, // FULL
		{s.write, "foreign_keys", "1"},
		{s.write, "busy_timeout", "5000"},
		{s.read, "query_only", "1"},
		{s.read, "foreign_keys", "1"},
	}
	for _, c := range cases {
		var got string
		mustOK(t, c.db.QueryRowContext(t.Context(), "PRAGMA "+c.pragma).Scan(&got))
		if !strings.EqualFold(got, c.want) {
			t.Errorf("PRAGMA %s = %q, want %q", c.pragma, got, c.want)
		}
	}
	normal := openFile(t, WithSync(SyncNormal))
	var got string
	mustOK(t, normal.write.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&got))
	if got != "1" {
		t.Errorf("WithSync(SyncNormal): synchronous = %q, want 1", got)
	}
}

func TestOpenErrors(t *testing.T) {
	for name, c := range map[string]struct {
		path string
		opts []Option
	}{
		"empty path":    {"", nil},
		"query in path": {filepath.Join(t.TempDir(), "x.db?mode=ro"), nil},
		"bad sync":      {filepath.Join(t.TempDir(), "x.db"), []Option{WithSync("OFF")}},
		"no buffer":     {filepath.Join(t.TempDir(), "x.db"), []Option{WithSubscriberBuffer(0)}},
		"missing dir":   {filepath.Join(t.TempDir(), "no", "such", "x.db"), nil},
	} {
		if s, err := Open(t.Context(), c.path, c.opts...); err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded, want an error", name)
		}
	}
}

func TestMigrations(t *testing.T) {
	ms, err := loadMigrations()
	mustOK(t, err)
	s := openFile(t)
	var v int
	mustOK(t, s.write.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&v))
	if v != len(ms) {
		t.Fatalf("user_version = %d, want %d", v, len(ms))
	}
	mustOK(t, migrate(t.Context(), s.write)) // nothing left to apply

	_, err = s.write.ExecContext(t.Context(), "PRAGMA user_version = 999")
	mustOK(t, err)
	if err := migrate(t.Context(), s.write); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("migrate on a newer schema: %v, want a 'newer' error", err)
	}
}

// TestQueryPlans checks that the hot queries use their indexes and never
// scan the tasks table or sort it. (The merge of several statuses sorts
// each arm's output, at most Limit+Offset rows read in index order; the
// claim sorts the heads of the served owner's runnable requirements, one
// row per requirement.)
func TestQueryPlans(t *testing.T) {
	s := openFile(t)
	pending := []task.Status{task.StatusPending}
	twoStatuses := []task.Status{task.StatusPending, task.StatusRunning}
	type tc struct {
		name  string
		query string
		args  []any
		want  []string
	}
	page := func(name, owner string, statuses []task.Status, want ...string) tc {
		q, args := taskPageQuery(owner, statuses, 20, 0)
		return tc{name, q, args, want}
	}
	cases := []tc{
		{"claim", claimSQL, []any{sql.Named("ckpt", "m.ckpt"), sql.Named("window", 1000), sql.Named("instance", ""),
			sql.Named("owner", ""), sql.Named("now", 0), sql.Named("expires", 0)},
			[]string{"queue_owners_waiting", "tasks_cap_claim", "tasks_cap_ckpt_claim", "SEARCH cap_instances"}},
		{"position", queuePositionSQL, []any{"x"}, []string{"tasks_claim"}},
		page("list all", "", nil, "tasks_created"),
		page("list one status", "", pending, "tasks_status_created"),
		page("list two statuses", "", twoStatuses, "tasks_status_created", "MERGE"),
		page("list owner", "alice", nil, "tasks_owner_created"),
		{"list one status from the oldest end", taskPageQueryOldest("", pending), []any{"pending", 20, 0}, []string{"tasks_status_created"}},
		{"list owner from the oldest end", taskPageQueryOldest("alice", nil), []any{"alice", 20, 0}, []string{"tasks_owner_created"}},
		{"list all from the oldest end", taskPageQueryOldest("", nil), []any{20, 0}, []string{"tasks_created"}},
		{"list running", runningSQL(runningByInstance), []any{sql.Named("instance", "x")}, []string{"tasks_running"}},
		{"list running expired", runningSQL(runningByInstance | runningLeaseExpired),
			[]any{sql.Named("instance", "x"), sql.Named("before", 1)}, []string{"tasks_running"}},
		{"get", taskGetSQL, []any{"x"}, []string{"sqlite_autoindex_tasks_1"}},
		{"finish", finishSQL, []any{sql.Named("to", "failed"), sql.Named("result", nil), sql.Named("error", nil),
			sql.Named("now", 0), sql.Named("id", "x"), sql.Named("from1", "running"), sql.Named("from2", "running"),
			sql.Named("owner", ""), sql.Named("progress", 0)}, []string{"sqlite_autoindex_tasks_1"}},
		{"requeue", requeueSQL, []any{sql.Named("now", 0), sql.Named("refund", 0), sql.Named("id", "x"), sql.Named("owner", ""),
			sql.Named("progress", 0)}, []string{"sqlite_autoindex_tasks_1"}},
		{"files by task", `SELECT id FROM files WHERE task_id = ? ORDER BY created_at DESC, id DESC LIMIT 20`, []any{"x"}, []string{"files_task_created"}},
		// Every write that logs a task event runs these.
		{"webhook subscribers?", whAnySubSQL, []any{sql.Named("task", "x"), sql.Named("owner", "y")},
			[]string{"webhook_subs_task", "webhook_subs_owner"}},
		{"webhook enqueue", whEnqueueSQL, []any{sql.Named("event", "e"), sql.Named("type", "task.completed"),
			sql.Named("task", "x"), sql.Named("owner", "y"), sql.Named("payload", "{}"), sql.Named("now", 0)},
			[]string{"webhook_subs_task", "webhook_subs_owner"}},
	}
	for _, c := range cases {
		plan := queryPlan(t, s.write, c.query, c.args...)
		for _, want := range c.want {
			if !strings.Contains(plan, want) {
				t.Errorf("%s: plan lacks %s:\n%s", c.name, want, plan)
			}
		}
		sortsAll := strings.Contains(plan, "TEMP B-TREE") && !strings.Contains(plan, "MERGE") && c.name != "claim"
		if strings.Contains(plan, "SCAN tasks\n") || strings.Contains(plan, "SCAN webhook_subs") || sortsAll {
			t.Errorf("%s: plan scans or sorts:\n%s", c.name, plan)
		}
	}
}

func queryPlan(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	mustOK(t, err)
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, notused int
		var detail string
		mustOK(t, rows.Scan(&id, &parent, &notused, &detail))
		b.WriteString(detail + "\n")
	}
	mustOK(t, rows.Err())
	return b.String()
}

// TestPubSubOverflow: a subscriber that does not read loses what overflows
// its buffer, counted, and the publisher never waits.
func TestPubSubOverflow(t *testing.T) {
	s := openFile(t, WithSubscriberBuffer(4))
	slow, err := s.Subscribe(t.Context())
	mustOK(t, err)
	defer slow.Close()
	for i := range 10 {
		mustOK(t, s.Publish(t.Context(), event.Event{Type: "task_progress", Time: int64(i)}))
	}
	for i := range 4 {
		if ev := <-slow.C(); ev.Time != int64(i) {
			t.Fatalf("event %d has Time %d, want %d", i, ev.Time, i)
		}
	}
	if got := slow.(*subscription).Dropped(); got != 6 {
		t.Errorf("Dropped = %d, want 6", got)
	}
	if got := s.DroppedEvents(); got != 6 {
		t.Errorf("DroppedEvents = %d, want 6", got)
	}
	mustOK(t, s.Close())
	if err := s.Publish(t.Context(), event.Event{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Publish after Close: %v, want ErrUnavailable", err)
	}
}

// TestPublishCopiesData: a publisher reusing its buffer does not change
// what subscribers received.
func TestPublishCopiesData(t *testing.T) {
	s := openFile(t)
	sub, err := s.Subscribe(t.Context())
	mustOK(t, err)
	defer sub.Close()
	data := []byte(`{"a":1}`)
	mustOK(t, s.Publish(t.Context(), event.Event{Type: "x", Data: data}))
	copy(data, `{"b":2}`)
	if got := string((<-sub.C()).Data); got != `{"a":1}` {
		t.Errorf("Data = %s, want {\"a\":1}", got)
	}
}

func TestInstanceDeviceRoundTrip(t *testing.T) {
	s := openFile(t)
	dev := instance.Device{Name: "cuda:0", VRAMTotal: 1 << 34}
	_, err := s.InstanceUpdate(t.Context(), &store.InstanceUpdateParams{ID: "a:1", Device: &dev})
	mustOK(t, err)
	got, err := s.InstanceGet(t.Context(), "a:1")
	mustOK(t, err)
	if got.Device != dev {
		t.Errorf("Device = %+v, want %+v", got.Device, dev)
	}
}

// TestFilesArePrivate: the database and its -wal and -shm files are
// readable by their owner only, whatever the umask, and an existing
// database readable by others is made private at Open.
func TestFilesArePrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "comfyfleet.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ConfigPut(t.Context(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	wantPrivate(t, path, path+"-wal", path+"-shm")
	s.Close()

	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	s, err = Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantPrivate(t, path)
}

func wantPrivate(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("stat %s: %v", p, err)
			continue
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), perm)
		}
	}
}

// TestMigrationCountsExistingFiles: the owner_files counts of 0003 start
// from the files stored before it.
func TestMigrationCountsExistingFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "comfyfleet.db")
	db, err := sql.Open("sqlite", path)
	mustOK(t, err)
	ms, err := loadMigrations()
	mustOK(t, err)
	for _, m := range ms[:2] {
		_, err := db.ExecContext(t.Context(), m.sql)
		mustOK(t, err)
	}
	_, err = db.ExecContext(t.Context(), `PRAGMA user_version = 2;
		INSERT INTO files (id, owner, task_id, node_id, filename, content_type, size, created_at) VALUES
			('a', 'alice', '', '', 'a.png', 'image/png', 100, 1), ('b', 'alice', 't', '9', 'b.png', 'image/png', 20, 2),
			('c', 'bob', '', '', 'c.png', 'image/png', 3, 3)`)
	mustOK(t, err)
	mustOK(t, db.Close())

	s, err := Open(t.Context(), path)
	mustOK(t, err)
	defer s.Close()
	for owner, want := range map[string]int64{"alice": 120, "bob": 3, "carol": 0} {
		u, err := s.UsageGet(t.Context(), &store.UsageGetParams{Owner: owner})
		mustOK(t, err)
		if u.StoredBytes != want {
			t.Errorf("%s's StoredBytes after the migration = %d, want %d", owner, u.StoredBytes, want)
		}
	}
}
