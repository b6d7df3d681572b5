// Package retention deletes finished tasks and files once they are older
// than the configured ages (the "retention" config section): records from
// the store, bytes from the blob store. Pinned tasks and files are kept,
// and so are pending and running tasks whatever their age.
//
// A Pruner works in bounded steps: it asks the store for at most
// Settings.Batch expired ids, deletes them one by one (a file's bytes
// before its record, a task's files before the task), pauses, and asks
// again, so a large backlog never holds the store for long and the
// dispatcher's writes go in between. Every replica runs its own Pruner;
// two deleting the same records at once is harmless, since a record
// already gone is skipped and a missing blob is no error.
package retention

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Settings are the pruner's tunables (config.Retention).
type Settings struct {
	// Tasks is how long a finished task is kept after it finished; zero
	// keeps tasks for good.
	Tasks time.Duration
	// Files is how long a file is kept after it was stored; zero keeps
	// files for good.
	Files time.Duration
	// Interval is the wait between two passes.
	Interval time.Duration
	// Batch is how many records one step deletes before a pause.
	Batch int
}

// Counter counts what was pruned (metrics.Metrics.Pruned).
type Counter interface {
	Pruned(kind string, n int)
}

// The kinds a Counter is given.
const (
	KindTask = "task"
	KindFile = "file"
)

// Options are what a Pruner works with.
type Options struct {
	Store store.Store
	Blob  blob.Store
	Log   *slog.Logger
	// Counter, when set, counts the records deleted.
	Counter Counter
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Pause is the wait between two steps of a pass; DefaultPause when zero.
	Pause time.Duration
}

// DefaultPause is the wait between two steps of a pass: short, so a
// backlog drains at a good pace, but long enough for the store to serve
// whatever queued behind a step.
const DefaultPause = 50 * time.Millisecond

// Pruner deletes expired tasks and files, every Settings.Interval while
// Run runs, or once with Prune.
type Pruner struct {
	o    Options
	wake chan struct{}

	mu       sync.Mutex // guards settings
	settings Settings
}

// Result is what one pass deleted.
type Result struct {
	Tasks int
	Files int
}

// New returns a pruner with the given settings.
func New(o Options, s Settings) *Pruner {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Pause <= 0 {
		o.Pause = DefaultPause
	}
	return &Pruner{o: o, settings: s, wake: make(chan struct{}, 1)}
}

// SetSettings changes the settings; a running pruner starts a pass with
// them at once.
func (p *Pruner) SetSettings(s Settings) {
	p.mu.Lock()
	p.settings = s
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pruner) current() Settings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settings
}

// Run prunes at start and then every Settings.Interval until ctx ends; it
// returns nil then. A failed pass is logged and tried again at the next.
func (p *Pruner) Run(ctx context.Context) error {
	for {
		if res, err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			p.o.Log.WarnContext(ctx, "retention pass failed", "err", err, "tasks_deleted", res.Tasks, "files_deleted", res.Files)
		} else if res.Tasks > 0 || res.Files > 0 {
			p.o.Log.InfoContext(ctx, "retention pass", "tasks_deleted", res.Tasks, "files_deleted", res.Files)
		}
		interval := p.current().Interval
		if interval <= 0 {
			interval = time.Minute
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-p.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// Prune runs one pass: the expired tasks first (with their files), then
// the expired files, each in steps of Settings.Batch with a pause between
// them. It stops at the first error other than a record already gone.
func (p *Pruner) Prune(ctx context.Context) (Result, error) {
	var res Result
	s := p.current()
	now := p.o.Now()
	if s.Tasks > 0 {
		if err := p.steps(ctx, s.Batch, func() (int, error) {
			return p.taskStep(ctx, now.Add(-s.Tasks), s.Batch, &res)
		}); err != nil {
			return res, err
		}
	}
	if s.Files > 0 {
		if err := p.steps(ctx, s.Batch, func() (int, error) {
			return p.fileStep(ctx, now.Add(-s.Files), s.Batch, &res)
		}); err != nil {
			return res, err
		}
	}
	return res, nil
}

// steps runs step until it finds fewer than batch records or deletes none
// of those it found (they were pinned or deleted meanwhile), pausing
// between two steps.
func (p *Pruner) steps(ctx context.Context, batch int, step func() (int, error)) error {
	for {
		found, err := step()
		if err != nil || found < max(batch, 1) {
			return err
		}
		t := time.NewTimer(p.o.Pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// taskStep deletes up to batch tasks finished before before, and reports
// how many it found (zero when it deleted none, to end the pass).
func (p *Pruner) taskStep(ctx context.Context, before time.Time, batch int, res *Result) (int, error) {
	ids, err := p.o.Store.TaskExpired(ctx, &store.ExpiredParams{Before: before, Limit: batch})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, id := range ids {
		ok, err := p.deleteTask(ctx, id, res)
		if err != nil {
			return 0, err
		}
		if ok {
			deleted++
		}
	}
	if deleted == 0 {
		return 0, nil
	}
	return len(ids), nil
}

// deleteTask deletes a task's unpinned files, then the task. It reports
// false when the task is gone already, or no longer expired (pinned
// meanwhile).
func (p *Pruner) deleteTask(ctx context.Context, id string, res *Result) (bool, error) {
	t, err := p.o.Store.TaskGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if t.Pinned || !t.Status.Final() {
		return false, nil
	}
	kept := 0 // pinned files, which stay at the head of the list
	for {
		page, err := p.o.Store.FileList(ctx, &store.FileListParams{TaskID: id, Limit: store.MaxListLimit, Offset: kept})
		if err != nil {
			return false, err
		}
		if len(page.Items) == 0 {
			break
		}
		for _, f := range page.Items {
			if f.Pinned {
				kept++
				continue
			}
			gone, err := p.deleteFile(ctx, f, res)
			if err != nil {
				return false, err
			}
			if !gone {
				kept++ // pinned meanwhile, or the task was
			}
		}
	}
	err = p.o.Store.TaskDelete(ctx, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return false, nil // another replica was first, or the task was pinned meanwhile
	}
	if err != nil {
		return false, err
	}
	res.Tasks++
	p.count(KindTask, 1)
	return true, nil
}

// fileStep deletes up to batch files stored before before, and reports how
// many it found (zero when none was left to delete).
func (p *Pruner) fileStep(ctx context.Context, before time.Time, batch int, res *Result) (int, error) {
	ids, err := p.o.Store.FileExpired(ctx, &store.ExpiredParams{Before: before, Limit: batch})
	if err != nil {
		return 0, err
	}
	n := res.Files
	for _, id := range ids {
		f, err := p.o.Store.FileGet(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // another replica was first
		}
		if err != nil {
			return 0, err
		}
		if f.Pinned {
			continue // pinned meanwhile
		}
		if _, err := p.deleteFile(ctx, f, res); err != nil {
			return 0, err
		}
	}
	if res.Files == n {
		return 0, nil
	}
	return len(ids), nil
}

// deleteFile deletes a file's record, in one step with the check that
// neither the file nor its task was pinned meanwhile, then its bytes. A
// record already gone or pinned is skipped. Bytes that cannot be deleted
// are logged and left behind (a leak, never pinned data lost), so one bad
// object does not stop every pass. It reports whether it deleted the
// record.
func (p *Pruner) deleteFile(ctx context.Context, f *file.File, res *Result) (bool, error) {
	err := p.o.Store.FilePrune(ctx, f.ID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	res.Files++
	p.count(KindFile, 1)
	if err := p.o.Blob.Delete(ctx, f.ID); err != nil && ctx.Err() == nil {
		p.o.Log.WarnContext(ctx, "retention: the bytes of a pruned file could not be deleted; they stay in the file store",
			"file_id", f.ID, "err", err)
	}
	return true, nil
}

func (p *Pruner) count(kind string, n int) {
	if p.o.Counter != nil {
		p.o.Counter.Pruned(kind, n)
	}
}
