package dispatch

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// fetchAttempts bounds tries to download one output file.
const fetchAttempts = 3

// collect copies every output file of every output node into the file
// store and completes the task. File ids are derived from the task, node
// and position, so collecting again after a restart rewrites the same files.
func (d *Dispatcher) collect(ctx context.Context, c *comfy.Client, t *task.Task, entry *comfy.HistoryEntry) {
	res := &task.Result{Files: []string{}, Outputs: map[string][]task.Output{}}
	nodes := make([]string, 0, len(entry.Outputs))
	for id := range entry.Outputs {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	base := d.current().PublicBaseURL
	for _, nodeID := range nodes {
		for i, ref := range entry.Outputs[nodeID].Files() {
			out, err := d.collectOne(ctx, c, t, nodeID, i, ref, base)
			if err != nil {
				if ctx.Err() != nil {
					return // shutting down: the next lease holder collects again
				}
				d.finishCollected(ctx, t, task.StatusFailed, nil, &task.Error{
					Type: task.ErrorTypeOutput, Message: fmt.Sprintf("output %s of node %s could not be fetched: %v", ref.Filename, nodeID, err),
				})
				return
			}
			res.Files = append(res.Files, out.URL)
			res.Outputs[nodeID] = append(res.Outputs[nodeID], out)
		}
	}
	d.finishCollected(ctx, t, task.StatusCompleted, res, nil)
}

func (d *Dispatcher) collectOne(ctx context.Context, c *comfy.Client, t *task.Task, nodeID string, i int, ref comfy.FileRef, base string) (task.Output, error) {
	id := d.fileID(t.ID, nodeID, i)
	name := blob.SanitizeFilename(ref.Filename)
	var size int64
	var ctype string
	var err error
	for attempt := range fetchAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return task.Output{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		size, ctype, err = d.fetch(ctx, c, ref, id, name)
		if err == nil || errors.Is(err, comfy.ErrNotFound) {
			break
		}
	}
	if err != nil {
		return task.Output{}, err
	}
	rec := &file.File{
		ID: id, Owner: t.Owner, TaskID: t.ID, NodeID: nodeID, Filename: name,
		ContentType: ctype, Size: size, CreatedAt: time.Now(),
	}
	_, err = storeRetry(ctx, func() (struct{}, error) { return struct{}{}, d.opts.Store.FileInsert(ctx, rec) })
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return task.Output{}, err
	}
	return task.Output{
		URL: FileURL(base, id, name), Filename: name, Type: cmp.Or(ref.Type, "output"), Kind: ref.Kind, NodeID: nodeID, FileID: id,
	}, nil
}

func (d *Dispatcher) fetch(ctx context.Context, c *comfy.Client, ref comfy.FileRef, id, name string) (int64, string, error) {
	resp, err := c.View(ctx, ref)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	n, err := d.opts.Blob.Put(ctx, id, resp.Body, 0)
	if err != nil {
		return 0, "", err
	}
	ctype := blob.ContentType(name, nil)
	return n, ctype, nil
}

func (d *Dispatcher) finishCollected(ctx context.Context, t *task.Task, to task.Status, res *task.Result, terr *task.Error) {
	done, err := storeRetry(ctx, func() (*task.Task, error) {
		return d.opts.Store.TaskFinish(ctx, &store.TaskFinishParams{
			ID: t.ID, From: []task.Status{task.StatusRunning}, To: to, Result: res, Error: terr,
			Progress: t.Progress, Now: time.Now(),
		})
	})
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "finish after collect failed", "task_id", t.ID, "instance_id", t.InstanceID, "err", err)
		}
		return
	}
	d.log.InfoContext(ctx, "task finished", "task_id", t.ID, "status", to, "instance_id", done.InstanceID)
	d.opts.Metrics.TaskFinished(done)
	if err := PublishFinal(ctx, d.opts.Store, done); err != nil && ctx.Err() == nil {
		d.log.WarnContext(ctx, "publish failed", "task_id", t.ID, "err", err)
	}
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

// FileURL is the public URL of a stored file.
func FileURL(base, id, name string) string {
	return base + "/files/" + id + "/" + url.PathEscape(name)
}
