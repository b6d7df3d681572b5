package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Prepared statements.
//
// Parsing and planning SQL costs more than running the gateway's small
// statements, so every fixed statement is prepared once at Open, on the
// writer or on the read pool, and kept on the Store. database/sql prepares a
// statement again on each read connection the first time it runs there, and
// a transaction borrows it with tx.StmtContext without preparing it again.
// SQL whose text depends on a call's filters (TaskList, FileList) goes
// through a stmtCache keyed by the text: its shapes are few, since values
// are always bound, never spliced into the text.

// writeStmts are the writer's statements.
type writeStmts struct {
	taskInsert, bodyInsert, claim, progress, renewLease, takeLease, taskStatus              *sql.Stmt
	finish, requeue, requestCancel                                                          *sql.Stmt
	fileInsert, fileKeep, fileDelete, filePrune, fileExists, instanceUpsert, instanceDelete *sql.Stmt
	configPut, leaseAcquire, leaseRelease, catalogPut                                       *sql.Stmt
	capPut, capInstancesPut, capCan, capCannot, pendingCount                                *sql.Stmt
	keyInsert, keyRevoke, keyTouch                                                          *sql.Stmt
	whSubInsert, whSubDelete, whEnqueue, whAnySub, whClaim, whRecord, whExists              *sql.Stmt
	taskDelete, taskPinned, taskPin, filePin                                                *sql.Stmt
	taskDeleteWhSubs, taskDeleteWhDeliveries                                                *sql.Stmt
	eventInsert, eventTrim                                                                  *sql.Stmt
}

// readStmts are the read pool's statements.
type readStmts struct {
	taskGet, queuePosition, queueAsked, queueSegment, queueHead, taskCounts *sql.Stmt
	fileGet, instanceGet, instanceList, configGet                           *sql.Stmt
	catalogGet, capList, capGet, capInstances                               *sql.Stmt
	usageGet                                                                *sql.Stmt
	keyGet, keyList                                                         *sql.Stmt
	whSubGet, whSubList, whByTask, whNextDue                                *sql.Stmt
	eventsAfter, eventFirst, eventLast                                      *sql.Stmt
	// running holds TaskListRunning's four queries, indexed by the
	// runningByInstance and runningLeaseExpired bits.
	running [4]*sql.Stmt
}

// stmtDef is a statement to prepare and where to keep it.
type stmtDef struct {
	dst   **sql.Stmt
	query string
}

func (w *writeStmts) defs() []stmtDef {
	return []stmtDef{
		{&w.taskInsert, taskInsertSQL}, {&w.bodyInsert, bodyInsertSQL}, {&w.claim, claimSQL},
		{&w.progress, progressSQL}, {&w.renewLease, renewLeaseSQL}, {&w.takeLease, takeLeaseSQL}, {&w.taskStatus, taskStatusSQL},
		{&w.finish, finishSQL}, {&w.requeue, requeueSQL}, {&w.requestCancel, requestCancelSQL},
		{&w.fileInsert, fileInsertSQL}, {&w.fileKeep, fileKeepSQL}, {&w.fileDelete, fileDeleteSQL}, {&w.filePrune, filePruneSQL}, {&w.fileExists, fileExistsSQL},
		{&w.instanceUpsert, instanceUpsertSQL}, {&w.instanceDelete, instanceDeleteSQL},
		{&w.configPut, configPutSQL}, {&w.leaseAcquire, leaseAcquireSQL}, {&w.leaseRelease, leaseReleaseSQL},
		{&w.catalogPut, catalogPutSQL},
		{&w.capPut, capPutSQL}, {&w.capInstancesPut, capInstancesPutSQL}, {&w.capCan, capCanSQL}, {&w.capCannot, capCannotSQL},
		{&w.pendingCount, pendingCountSQL},
		{&w.keyInsert, keyInsertSQL}, {&w.keyRevoke, keyRevokeSQL}, {&w.keyTouch, keyTouchSQL},
		{&w.whSubInsert, whSubInsertSQL}, {&w.whSubDelete, whSubDeleteSQL}, {&w.whEnqueue, whEnqueueSQL}, {&w.whAnySub, whAnySubSQL},
		{&w.whClaim, whClaimSQL}, {&w.whRecord, whRecordSQL}, {&w.whExists, whExistsSQL},
		{&w.taskDelete, taskDeleteSQL}, {&w.taskPinned, taskPinnedSQL}, {&w.taskPin, taskPinSQL}, {&w.filePin, filePinSQL},
		{&w.taskDeleteWhSubs, taskDeleteWhSubsSQL}, {&w.taskDeleteWhDeliveries, taskDeleteWhDeliveriesSQL},
		{&w.eventInsert, eventInsertSQL}, {&w.eventTrim, eventTrimSQL},
	}
}

func (r *readStmts) defs() []stmtDef {
	defs := []stmtDef{
		{&r.taskGet, taskGetSQL}, {&r.queuePosition, queuePositionSQL}, {&r.queueAsked, queueAskedSQL}, {&r.queueSegment, queueSegmentSQL}, {&r.queueHead, queueHeadSQL}, {&r.taskCounts, taskCountsSQL},
		{&r.fileGet, fileGetSQL}, {&r.instanceGet, instanceGetSQL}, {&r.instanceList, instanceListSQL},
		{&r.configGet, configGetSQL}, {&r.catalogGet, catalogGetSQL}, {&r.usageGet, usageGetSQL},
		{&r.eventsAfter, eventsAfterSQL}, {&r.eventFirst, eventFirstSQL}, {&r.eventLast, eventLastSQL},
		{&r.capList, capListSQL}, {&r.capGet, capGetSQL}, {&r.capInstances, capInstancesSQL},
		{&r.keyGet, keyGetSQL}, {&r.keyList, keyListSQL},
		{&r.whSubGet, whSubGetSQL}, {&r.whSubList, whSubListSQL}, {&r.whByTask, whByTaskSQL}, {&r.whNextDue, whNextDueSQL},
	}
	for v := range r.running {
		defs = append(defs, stmtDef{&r.running[v], runningSQL(v)})
	}
	return defs
}

// prepareStmts prepares the writer's and the read pool's statements and the
// read pool's cache of dynamic SQL.
func (s *Store) prepareStmts(ctx context.Context) error {
	for _, set := range []struct {
		db   *sql.DB
		defs []stmtDef
	}{{s.write, s.ws.defs()}, {s.read, s.rs.defs()}} {
		for _, d := range set.defs {
			st, err := set.db.PrepareContext(ctx, d.query)
			if err != nil {
				return fmt.Errorf("prepare %.60q: %w", d.query, err)
			}
			*d.dst = st
			s.fixed = append(s.fixed, st)
		}
	}
	s.readCache = newStmtCache(s.read)
	return nil
}

// closeStmts closes every prepared statement, the cached ones included.
func (s *Store) closeStmts() error {
	var errs []error
	for _, st := range s.fixed {
		errs = append(errs, st.Close())
	}
	if s.readCache != nil {
		errs = append(errs, s.readCache.close())
	}
	return errors.Join(errs...)
}

// stmtCache prepares SQL whose text varies with a call's arguments once per
// distinct text, on one *sql.DB. It only ever holds the few shapes its
// callers build (values are bound, never part of the text), so it is not
// bounded; maxCached guards against a caller that breaks that rule.
type stmtCache struct {
	db *sql.DB

	mu     sync.RWMutex // guards m and closed
	m      map[string]*sql.Stmt
	closed bool
}

// maxCached is far above the shapes TaskList and FileList build (a few
// dozen); past it, statements are prepared for one use.
const maxCached = 256

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*sql.Stmt)}
}

// get returns the statement for query, preparing it on first use. done
// must be called when the caller is finished with the statement: it closes
// a statement that was not cached.
func (c *stmtCache) get(ctx context.Context, query string) (st *sql.Stmt, done func(), err error) {
	c.mu.RLock()
	st, ok := c.m[query]
	c.mu.RUnlock()
	if ok {
		return st, func() {}, nil
	}
	if st, err = c.db.PrepareContext(ctx, query); err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached, ok := c.m[query]; ok { // another caller prepared it meanwhile
		st.Close()
		return cached, func() {}, nil
	}
	if c.closed || len(c.m) >= maxCached {
		return st, func() { st.Close() }, nil
	}
	c.m[query] = st
	return st, func() {}, nil
}

// close closes the cached statements; later gets prepare for one use.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for q, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, q)
	}
	return errors.Join(errs...)
}

// size is how many statements the cache holds.
func (c *stmtCache) size() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// cachedStmts returns the statements for queries from the read pool's cache,
// preparing those it lacks, and a func to call once they are no longer in
// use. Call it before beginning the transaction that uses them: preparing
// takes a connection of the pool, which a transaction holds until it ends.
func (s *Store) cachedStmts(ctx context.Context, queries ...string) ([]*sql.Stmt, func(), error) {
	stmts := make([]*sql.Stmt, len(queries))
	dones := make([]func(), 0, len(queries))
	release := func() {
		for _, done := range dones {
			done()
		}
	}
	for i, q := range queries {
		st, done, err := s.readCache.get(ctx, q)
		if err != nil {
			release()
			return nil, nil, err
		}
		stmts[i], dones = st, append(dones, done)
	}
	return stmts, release, nil
}
