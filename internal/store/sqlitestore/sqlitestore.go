// Package sqlitestore is the embedded store.Store: one SQLite file owned by
// one gateway process, through modernc.org/sqlite (pure Go, no cgo).
//
// # Connections
//
// All writes go through one connection (a *sql.DB with MaxOpenConns(1)) and
// every write transaction starts with BEGIN IMMEDIATE, so writers queue in Go
// instead of spinning on SQLITE_BUSY, and a read-modify-write is atomic.
// Writes that queue together share one transaction (group commit, batch.go).
// Reads use a separate pool of query_only connections; in WAL mode they never
// block the writer nor wait for it. A ":memory:" database has a single
// connection for both, since each connection to ":memory:" is its own database.
// A call waits for its turn at the writer or the read pool for as long as
// its context allows, then runs its statements with the context's
// cancellation detached (batch.go, gate.go): watching it per statement costs
// more than the statements.
//
// # Durability
//
// The journal is WAL with synchronous=FULL by default: every commit is fsynced
// before the call returns, so an accepted task, a finished task or a lease
// survives power loss, not only a crash of the process. Gateway writes are a
// few per task (GPU runs take seconds), so the fsync costs little; WithSync
// (SyncNormal) trades the last commits on power loss for faster writes (the
// database stays consistent either way). busy_timeout (default 5s) covers
// another process, such as a backup tool, holding the file briefly; foreign
// keys are on. The writer keeps a 32 MiB page cache, which holds the hot
// parts of the queue indexes with a million pending tasks (BenchmarkClaim).
//
// # Statements
//
// Every fixed statement is prepared once at Open and kept on the Store; SQL
// that varies with a list's filters is prepared once per shape and cached
// (stmts.go). Parsing SQL costs more than running these small statements.
//
// # Schema
//
// Numbered migrations in migrations/*.sql are embedded in the binary and
// applied at Open, each in its own transaction together with PRAGMA
// user_version, which records the schema version.
//
// # Permissions
//
// The database holds every task, file record and the runtime config: Open
// creates the file readable by its owner only (0600), and takes group and
// other permissions away from an existing one and its -wal and -shm files.
// SQLite gives the -wal and -shm files the permissions of the database file.
//
// # Events
//
// Pub/sub is in-process fan-out: one process owns the file, so every
// subscriber lives in it. Each subscription has a bounded buffer (default
// 1024 events); Publish never blocks: when a subscriber's buffer is full the
// event is dropped for that subscriber and counted (Store.DroppedEvents; the
// Subscription also has a Dropped() uint64 method), and the subscriber
// resyncs from the store. Events are never persisted: a subscriber sees what
// is published while it is subscribed, in publish order.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

var _ store.Store = (*Store)(nil)

// Store is the SQLite implementation of store.Store. It is safe for
// concurrent use.
type Store struct {
	write *sql.DB // one connection: every write
	read  *sql.DB // query_only pool; the same as write for ":memory:"
	hub   *hub

	ws        writeStmts  // prepared on write
	rs        readStmts   // prepared on read
	readCache *stmtCache  // TaskList's and FileList's SQL, on read
	fixed     []*sql.Stmt // ws and rs, to close
	devices   deviceCache
	// w runs every write, in batches (batch.go).
	w *writer
	// logSize is how many logged events are kept (events.go).
	logSize int64
	// readGate admits calls to read (gate.go).
	readGate gate

	closeOnce sync.Once
	closeErr  error
}

// Sync is the synchronous pragma: how often SQLite waits for the disk.
type Sync string

const (
	// SyncFull fsyncs the WAL on every commit: nothing committed is lost on
	// power loss. The default.
	SyncFull Sync = "FULL"
	// SyncNormal fsyncs only at checkpoints: a power loss may drop the last
	// commits, a process crash loses nothing.
	SyncNormal Sync = "NORMAL"
)

// Option changes how Open opens the database.
type Option func(*options)

type options struct {
	sync             Sync
	busyTimeout      time.Duration
	readConns        int
	subscriberBuffer int
	eventLogSize     int64
}

// WithSync sets the synchronous pragma. Default SyncFull.
func WithSync(s Sync) Option { return func(o *options) { o.sync = s } }

// WithBusyTimeout sets how long a statement waits for a lock held by another
// process before failing. Default 5s.
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busyTimeout = d } }

// WithReadConns sets the size of the read pool. Default max(4, GOMAXPROCS).
func WithReadConns(n int) Option { return func(o *options) { o.readConns = n } }

// WithSubscriberBuffer sets how many events a subscriber may fall behind
// before events are dropped for it. Default 1024.
func WithSubscriberBuffer(n int) Option { return func(o *options) { o.subscriberBuffer = n } }

// WithEventLogSize sets how many logged events the store keeps at least.
// Default store.EventLogSize.
func WithEventLogSize(n int) Option { return func(o *options) { o.eventLogSize = int64(n) } }

func (o *options) validate() error {
	switch {
	case o.sync != SyncFull && o.sync != SyncNormal:
		return fmt.Errorf("sync %q: want FULL or NORMAL", o.sync)
	case o.busyTimeout < 0:
		return fmt.Errorf("busy timeout %v: must not be negative", o.busyTimeout)
	case o.readConns < 1:
		return fmt.Errorf("read conns %d: want at least 1", o.readConns)
	case o.subscriberBuffer < 1:
		return fmt.Errorf("subscriber buffer %d: want at least 1", o.subscriberBuffer)
	case o.eventLogSize < 1:
		return fmt.Errorf("event log size %d: want at least 1", o.eventLogSize)
	}
	return nil
}

// memoryPath is the path of a database that lives in memory only.
const memoryPath = ":memory:"

// Open opens (creating if needed) the database at path, or an in-memory one
// for ":memory:", and migrates it to the current schema.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{sync: SyncFull, busyTimeout: 5 * time.Second, readConns: max(4, runtime.GOMAXPROCS(0)), subscriberBuffer: 1024,
		eventLogSize: store.EventLogSize}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlitestore: open %q: want a file path without '?' or %q", path, memoryPath)
	}
	s, err := open(ctx, path, &o)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return s, nil
}

func open(ctx context.Context, path string, o *options) (*Store, error) {
	memory := path == memoryPath
	if !memory {
		if err := makePrivate(path); err != nil {
			return nil, err
		}
	}
	write, err := sql.Open("sqlite", path+"?"+writeDSN(o, memory))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1) // keep the connection: for ":memory:" it is the database
	if err := prepareWriter(ctx, write, memory); err != nil {
		write.Close()
		return nil, err
	}
	s := &Store{write: write, read: write, hub: newHub(o.subscriberBuffer), logSize: o.eventLogSize, readGate: make(gate, 1)}
	if !memory {
		s.readGate = make(gate, o.readConns)
		if s.read, err = openReader(ctx, path, o); err != nil {
			write.Close()
			return nil, err
		}
	}
	if err := s.prepareStmts(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.w, err = newWriter(ctx, write); err != nil {
		s.Close()
		return nil, err
	}
	s.w.committed = s.hub.fanOut
	return s, nil
}

// makePrivate creates the database file with mode 0600 when it does not
// exist, and takes group and other permissions away from the file and its
// -wal and -shm files when it does.
func makePrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(p, perm&0o700); err != nil {
				return fmt.Errorf("make %s private: %w", p, err)
			}
		}
	}
	return nil
}

// openReader opens the read pool.
func openReader(ctx context.Context, path string, o *options) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path+"?"+readDSN(o))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(o.readConns)
	db.SetMaxIdleConns(o.readConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// writeDSN holds the writer's pragmas: WAL (persistent in the file), the
// synchronous level, a 32 MiB page cache, a cap on the WAL file kept after a
// checkpoint, and BEGIN IMMEDIATE for every transaction.
func writeDSN(o *options, memory bool) string {
	q := commonDSN(o) + "&_synchronous=" + string(o.sync) + "&_txlock=immediate"
	if !memory {
		q += "&_journal_mode=WAL&_pragma=journal_size_limit(67108864)&_pragma=cache_size(-32768)"
	}
	return q
}

// readDSN makes read connections refuse writes.
func readDSN(o *options) string { return commonDSN(o) + "&_query_only=1" }

func commonDSN(o *options) string {
	return fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1", o.busyTimeout.Milliseconds())
}

// prepareWriter checks that WAL took effect and migrates the schema.
func prepareWriter(ctx context.Context, db *sql.DB, memory bool) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !memory && !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, want wal (is the file on a filesystem that supports it?)", mode)
	}
	return migrate(ctx, db)
}

// Driver returns "sqlite".
func (s *Store) Driver() string { return "sqlite" }

// Ping checks that both the read pool and the writer answer; a writer
// stuck behind a long write shows here as the ctx deadline.
func (s *Store) Ping(ctx context.Context) error {
	for _, db := range []*sql.DB{s.read, s.write} {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("sqlitestore: ping: %w: %w", store.ErrUnavailable, err)
		}
	}
	return nil
}

// Close ends every subscription and closes the database. It is safe to call
// more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.w != nil {
			s.w.close()
		}
		s.hub.close()
		errs := []error{s.closeStmts()}
		if s.read != s.write {
			errs = append(errs, s.read.Close())
		}
		errs = append(errs, s.write.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// translate turns driver errors into the store's sentinels; it is the only
// place that knows SQLite's error codes.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		}
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR:
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
	}
	return err
}

// wrap names the operation and translates err; nil stays nil.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("sqlitestore: %s: %w", fmt.Sprintf(format, args...), translate(err))
}

// ms converts a time to stored Unix milliseconds; the zero time is 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS converts stored Unix milliseconds back to a UTC time; 0 is the zero time.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// inTx runs fn in a transaction on db and commits if fn succeeds. On the
// write pool the transaction is BEGIN IMMEDIATE.
func inTx(ctx context.Context, db *sql.DB, readOnly bool, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: readOnly})
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
