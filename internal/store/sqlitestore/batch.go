package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/comfyfleet/comfyfleet/internal/event"
)

// Group commit.
//
// Every write runs on the one write connection, and a commit writes to the
// WAL every page its transaction touched: the task's row and index entries,
// but also the pages every task shares (task_counts, queue_owners, the
// upper levels of each index). Under load the commits are most of a write's
// cost, and they are serial. So writes queue, and whoever runs the next
// batch runs all the writes waiting at that moment in one transaction, each
// in a savepoint of its own so that a failing write is undone alone, and
// commits once: the shared pages are written once per batch instead of once per
// write. A caller gets its result after the commit, so nothing is reported
// before it is as durable as the sync mode makes it. A write that finds the
// writer idle runs alone: in autocommit if it is one statement, in a
// transaction of its own if it is several (execTx), as without batching.

// maxBatch bounds the writes of one transaction, and so the time a write can
// wait behind those queued before it.
const maxBatch = 64

// errClosed answers writes made after Close.
var errClosed = fmt.Errorf("%w: store closed", sql.ErrConnDone)

// writeFunc is one write: its statements run through ex, with ctx (the
// caller's context without its cancellation).
type writeFunc func(ctx context.Context, ex execer) error

// execer runs a write's prepared statements where the writer put it: in the
// batch's transaction, or alone on the database.
type execer interface {
	stmt(ctx context.Context, st *sql.Stmt) *sql.Stmt
}

// inTxn runs statements in a transaction.
type inTxn struct{ tx *sql.Tx }

func (e inTxn) stmt(ctx context.Context, st *sql.Stmt) *sql.Stmt { return e.tx.StmtContext(ctx, st) }

// alone runs statements on the database, each its own transaction.
type alone struct{}

func (alone) stmt(_ context.Context, st *sql.Stmt) *sql.Stmt { return st }

// writeOp is one queued write.
type writeOp struct {
	ctx context.Context // the caller's: an op whose context ended before it ran is skipped
	fn  writeFunc
	// multi: fn runs several statements, which must commit together.
	multi bool
	state atomic.Int32
	err   error
	done  chan struct{}
	// logged are the events fn appended to the event log; they are
	// delivered once the write has committed, in the order of the log.
	logged []event.Event
}

// writer runs the writes of a Store in batches. There is no writer
// goroutine: a caller that finds no batch running becomes the leader and
// runs the queued writes itself, its own among them, so a write that meets
// no other runs in its caller's goroutine at the cost it would have alone.
type writer struct {
	db *sql.DB
	// savepoint, release and rollback frame each write of a shared batch.
	savepoint, release, rollback *sql.Stmt
	// lead is held by the caller running a batch.
	lead chan struct{}

	mu     sync.Mutex // guards queue and closed
	queue  []*writeOp
	closed bool

	// shared counts the transactions that carried more than one write.
	shared atomic.Int64
	// committed receives the events a write logged, once it committed, in
	// log order (batches run one at a time and their writes in order).
	committed func([]event.Event)
}

// The states of a writeOp.
const (
	opQueued    int32 = iota
	opTaken           // in a batch: its outcome will come
	opAbandoned       // its caller's context ended first: never runs
)

func newWriter(ctx context.Context, db *sql.DB) (*writer, error) {
	w := &writer{db: db, lead: make(chan struct{}, 1)}
	for _, d := range []struct {
		st  **sql.Stmt
		sql string
	}{{&w.savepoint, "SAVEPOINT write"}, {&w.release, "RELEASE write"}, {&w.rollback, "ROLLBACK TO write"}} {
		st, err := db.PrepareContext(ctx, d.sql)
		if err != nil {
			w.closeStmts()
			return nil, fmt.Errorf("prepare %q: %w", d.sql, err)
		}
		*d.st = st
	}
	return w, nil
}

// exec runs fn, a write of one statement, and returns its outcome once its
// batch has committed (or ctx's error if ctx ends before fn starts).
func (w *writer) exec(ctx context.Context, fn writeFunc) error { return w.run(ctx, fn, false) }

// execTx is exec for a write of several statements: they always commit
// together.
func (w *writer) execTx(ctx context.Context, fn writeFunc) error { return w.run(ctx, fn, true) }

// execLogged is exec for a write that appends events to the event log: fn
// returns them, numbered, and they are handed to w.committed once the write
// commits.
func (w *writer) execLogged(ctx context.Context, fn func(ctx context.Context, ex execer) ([]event.Event, error)) error {
	op := &writeOp{ctx: ctx, multi: true, done: make(chan struct{})}
	op.fn = func(ctx context.Context, ex execer) error {
		evs, err := fn(ctx, ex)
		op.logged = evs
		return err
	}
	return w.runOp(op)
}

func (w *writer) run(ctx context.Context, fn writeFunc, multi bool) error {
	return w.runOp(&writeOp{ctx: ctx, fn: fn, multi: multi, done: make(chan struct{})})
}

func (w *writer) runOp(op *writeOp) error {
	ctx := op.ctx
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errClosed
	}
	w.queue = append(w.queue, op)
	w.mu.Unlock()
	for {
		select {
		case w.lead <- struct{}{}:
			w.leadBatch()
		case <-op.done:
			return op.err
		case <-ctx.Done():
			if op.state.CompareAndSwap(opQueued, opAbandoned) {
				return ctx.Err()
			}
			<-op.done // a batch has it
			return op.err
		}
	}
}

// leadBatch runs the next batch; the caller holds lead, which it gives back
// even if a write panics.
func (w *writer) leadBatch() {
	defer func() { <-w.lead }()
	w.commit(w.take())
}

// take removes up to maxBatch queued writes, skipping abandoned ones.
func (w *writer) take() []*writeOp {
	w.mu.Lock()
	defer w.mu.Unlock()
	var batch []*writeOp
	n := 0
	for _, op := range w.queue {
		if len(batch) == maxBatch {
			break
		}
		n++
		if op.state.CompareAndSwap(opQueued, opTaken) {
			batch = append(batch, op)
		}
	}
	w.queue = w.queue[n:]
	if len(w.queue) == 0 {
		w.queue = nil // let the array go
	}
	return batch
}

// close fails the writes still queued and waits for the batch in progress.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	queued := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, op := range queued {
		if op.state.CompareAndSwap(opQueued, opTaken) {
			op.finish(errClosed)
		}
	}
	w.lead <- struct{}{} // held from now on: no batch runs after close
	w.closeStmts()
}

func (w *writer) closeStmts() {
	for _, st := range []*sql.Stmt{w.savepoint, w.release, w.rollback} {
		if st != nil {
			st.Close()
		}
	}
}

// commit runs one batch in one transaction and answers its callers.
func (w *writer) commit(live []*writeOp) {
	if len(live) == 0 {
		return
	}
	if len(live) == 1 && !live[0].multi {
		op := live[0]
		err := op.call(alone{})
		if err == nil {
			w.deliver(op)
		}
		op.finish(err)
		return
	}
	ctx := context.Background()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		failOpen(live, err)
		return
	}
	if len(live) == 1 {
		op := live[0]
		op.err = op.call(inTxn{tx})
	} else {
		w.shared.Add(1)
		for _, op := range live {
			var fatal error
			if op.err, fatal = w.runSaved(ctx, tx, op); fatal != nil {
				// The transaction may be gone (SQLite rolls it back
				// itself on some errors): nothing of the batch commits.
				_ = tx.Rollback()
				failOpen(live, fatal)
				return
			}
		}
	}
	var commitErr error
	if anyOK(live) {
		commitErr = tx.Commit()
	} else {
		commitErr = tx.Rollback()
	}
	for _, op := range live {
		if op.err == nil {
			op.err = commitErr
		}
		if op.err == nil {
			w.deliver(op)
		}
		op.finish(op.err)
	}
}

// deliver hands the events op logged to w.committed.
func (w *writer) deliver(op *writeOp) {
	if len(op.logged) > 0 && w.committed != nil {
		w.committed(op.logged)
	}
}

// failOpen answers with err every op of batch not answered yet.
func failOpen(batch []*writeOp, err error) {
	for _, op := range batch {
		select {
		case <-op.done:
		default:
			op.finish(err)
		}
	}
}

// runSaved runs op inside a savepoint, undoing its changes if it fails. A
// failure of the savepoint statements themselves is fatal to the batch.
func (w *writer) runSaved(ctx context.Context, tx *sql.Tx, op *writeOp) (opErr, fatal error) {
	if _, err := tx.StmtContext(ctx, w.savepoint).ExecContext(ctx); err != nil {
		return nil, err
	}
	opErr = op.call(inTxn{tx})
	if opErr != nil {
		if _, err := tx.StmtContext(ctx, w.rollback).ExecContext(ctx); err != nil {
			return opErr, errors.Join(opErr, err)
		}
	}
	if _, err := tx.StmtContext(ctx, w.release).ExecContext(ctx); err != nil {
		return opErr, err
	}
	return opErr, nil
}

func anyOK(ops []*writeOp) bool {
	for _, op := range ops {
		if op.err == nil {
			return true
		}
	}
	return false
}

// call runs the write with its caller's context, detached from its
// cancellation. A panic, which the leader would otherwise raise in its own
// caller's goroutine and with the write connection held, is that write's
// error instead.
func (op *writeOp) call(ex execer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlitestore: write panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return op.fn(context.WithoutCancel(op.ctx), ex)
}

func (op *writeOp) finish(err error) {
	op.err = err
	close(op.done)
}
