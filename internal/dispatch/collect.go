package dispatch

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// fetchAttempts bounds tries to download one output file.
const fetchAttempts = 3

// collect copies every output file of every output node into the file
// store, then the images the run received over the WebSocket, and
// completes the task. File ids are derived from the task, node and
// position, so collecting again after a restart rewrites the same files.
// It returns the task as it finished, nil if it did not (shutting down, or
// another replica took it over).
// also builds events to log with the finish (store.TaskFinishParams.Also).
func (d *Dispatcher) collect(ctx context.Context, src outputSource, t *task.Task, entry *comfy.HistoryEntry, frames *streamed, also func() []event.Event, clock *stageClock) *task.Task {
	wsNodes, wsImages, terr := frames.result()
	if terr != nil {
		return d.finishCollected(ctx, t, task.StatusFailed, nil, terr, nil, also)
	}
	res := &task.Result{Files: []string{}, Outputs: map[string][]task.Output{}}
	var recs []*file.File
	nodes := make([]string, 0, len(entry.Outputs))
	for id := range entry.Outputs {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	base := d.current().PublicBaseURL
	for _, nodeID := range nodes {
		for i, ref := range entry.Outputs[nodeID].Files() {
			out, rec, err := d.collectOne(ctx, src, t, nodeID, i, ref, base)
			if err != nil {
				if ctx.Err() != nil {
					return nil // shutting down: the next lease holder collects again
				}
				return d.finishCollected(ctx, t, task.StatusFailed, nil, &task.Error{
					Type: task.ErrorTypeOutput, Message: fmt.Sprintf("output %s of node %s could not be copied: %v", ref.Filename, nodeID, err),
				}, recs, also)
			}
			res.Files = append(res.Files, out.URL)
			res.Outputs[nodeID] = append(res.Outputs[nodeID], out)
			recs = append(recs, rec)
		}
	}
	recs, ended, ok := d.storeStreamed(ctx, t, entry, wsNodes, wsImages, res, recs, also)
	if !ok {
		return ended
	}
	clock.collected = time.Now()
	done := d.finishCollected(ctx, t, task.StatusCompleted, res, nil, recs, also)
	if done != nil && done.Status == task.StatusCompleted {
		clock.finished = time.Now()
		if s, ok := clock.stages(); ok {
			s.report(d.opts.Metrics)
		}
	}
	return done
}

// collectOne copies one output into the file store and returns it with
// the record that finishing the task stores.
func (d *Dispatcher) collectOne(ctx context.Context, src outputSource, t *task.Task, nodeID string, i int, ref comfy.FileRef, base string) (task.Output, *file.File, error) {
	id := d.fileID(t.ID, nodeID, i)
	name := blob.SanitizeFilename(ref.Filename)
	size, err := d.copyOutput(ctx, src, ref, id)
	if err != nil {
		return task.Output{}, nil, err
	}
	rec := &file.File{
		ID: id, Owner: t.Owner, TaskID: t.ID, NodeID: nodeID, Filename: name,
		ContentType: blob.ContentType(name, nil), Size: size, CreatedAt: time.Now(),
	}
	return task.Output{
		URL: file.URL(base, id, name), Filename: name, Type: cmp.Or(ref.Type, "output"), Kind: ref.Kind, NodeID: nodeID, FileID: id,
	}, rec, nil
}

// copyOutput copies one output file into the file store. A download that
// fails is tried fetchAttempts times; a file store that cannot take the
// write (read-only, full) is waited for up to writeRetryFor, and meanwhile
// this replica claims no new task (see files).
func (d *Dispatcher) copyOutput(ctx context.Context, src outputSource, ref comfy.FileRef, id string) (int64, error) {
	var writeSince time.Time
	wait, fetchFails := 200*time.Millisecond, 0
	for {
		n, err := d.fetch(ctx, src, ref, id)
		var we *writeError
		var storeBack <-chan struct{} // a write waits for the store, a download does not
		switch {
		case err == nil:
			return n, nil
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case errors.Is(err, blob.ErrTooLarge):
			return 0, fmt.Errorf("it is larger than files.maxOutputBytes (%d bytes)", d.current().MaxOutputBytes)
		case errors.As(err, &we):
			d.files.failed(ctx, we.err)
			if writeSince.IsZero() {
				writeSince = time.Now()
			}
			if time.Since(writeSince) > writeRetryFor {
				return 0, we
			}
			storeBack = d.files.writable()
		case errors.Is(err, comfy.ErrNotFound):
			return 0, err
		default:
			if fetchFails++; fetchFails >= fetchAttempts {
				return 0, err
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		case <-storeBack:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// writeRetryFor bounds how long an output waits for the file store to take
// writes again before its task fails.
const writeRetryFor = 2 * time.Minute

// writeError is a failure of the gateway's own file store, not of the instance.
type writeError struct{ err error }

func (e *writeError) Error() string { return describeWriteError(e.err) }
func (e *writeError) Unwrap() error { return e.err }

// describeWriteError words a file store failure by its cause, without the
// server's paths.
func describeWriteError(err error) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return "the gateway's file store is read-only"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "the gateway's file store is full"
	case errors.Is(err, fs.ErrPermission):
		return "the gateway's file store refused the write (permission denied)"
	default:
		return "the gateway could not write to its file store"
	}
}

// fetch copies one output into the blob store under id, within
// files.outputTimeout and files.maxOutputBytes.
func (d *Dispatcher) fetch(ctx context.Context, src outputSource, ref comfy.FileRef, id string) (int64, error) {
	s := d.current()
	ctx, cancel := context.WithTimeout(ctx, s.outputTimeout())
	defer cancel()
	var rc io.ReadCloser
	if f, path := src.local(ctx, ref); f != nil {
		defer f.Close()
		if n, ok, err := d.link(ctx, id, path, f, s.MaxOutputBytes); ok || err != nil {
			return n, err
		}
		rc = f
	} else {
		var err error
		if rc, err = src.view(ctx, ref); err != nil {
			return 0, err
		}
		defer rc.Close()
	}
	body := &readTracker{r: rc}
	n, err := d.opts.Blob.Put(ctx, id, body, s.MaxOutputBytes)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, blob.ErrTooLarge):
		return 0, err
	case body.err != nil || ctx.Err() != nil:
		return 0, fmt.Errorf("download %s: %w", ref.Filename, errors.Join(body.err, ctx.Err()))
	}
	return 0, &writeError{err}
}

// link stores a file of the instance's output folder without copying it,
// when the file store can (blob.Linker): ok false means copy it instead.
func (d *Dispatcher) link(ctx context.Context, id, path string, f *os.File, maxBytes int64) (n int64, ok bool, err error) {
	l, can := d.opts.Blob.(blob.Linker)
	if !can {
		return 0, false, nil
	}
	return l.Link(ctx, id, path, f, maxBytes)
}

// readTracker remembers the error its reader returned, to tell a failed
// download from a failed write.
type readTracker struct {
	r   io.Reader
	err error
}

func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// finishCollected ends t with the records of the files copied for it
// (also when it failed: the copies are the owner's, listed and counted).
func (d *Dispatcher) finishCollected(ctx context.Context, t *task.Task, to task.Status, res *task.Result, terr *task.Error, files []*file.File, also func() []event.Event) *task.Task {
	done, err := storeRetry(ctx, func() (*task.Task, error) {
		return d.opts.Store.TaskFinish(ctx, &store.TaskFinishParams{
			ID: t.ID, From: []task.Status{task.StatusRunning}, To: to, Result: res, Error: terr,
			LeaseOwner: d.opts.Replica, Progress: t.Progress, Files: files, Now: time.Now(), Also: also,
		})
	})
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "finish after collect failed", "task_id", t.ID, "instance_id", t.InstanceID, "err", err)
		}
		return nil
	}
	d.log.InfoContext(ctx, "task finished", "task_id", t.ID, "status", to, "instance_id", done.InstanceID)
	d.opts.Metrics.TaskFinished(done) // the store published its final events with the change
	return done
}

// fileID derives an output file's id: stable for (task, node, index) and
// unguessable without the key.
func (d *Dispatcher) fileID(taskID, nodeID string, i int) string {
	mac := hmac.New(sha256.New, d.opts.FileIDKey)
	fmt.Fprintf(mac, "%s\x00%s\x00%d", taskID, nodeID, i)
	u, _ := uuid.FromBytes(mac.Sum(nil)[:16])
	u[6] = (u[6] & 0x0f) | 0x80 // version 8: custom
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u.String()
}
