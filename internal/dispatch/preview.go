package dispatch

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/event"
)

const (
	// previewInterval is the shortest time between two task_preview events
	// of one task: a preview arriving sooner waits, and a newer one
	// replaces it.
	previewInterval = 500 * time.Millisecond
	// maxPreviewBytes skips larger previews: base64 makes each a third
	// bigger on the event channel (Redis pub/sub) and in every client's
	// queue. A sampler preview is a JPEG of at most 512 px, tens of KiB.
	maxPreviewBytes = 256 << 10
)

// previewRelay publishes the latest preview of each running task at most
// once per interval. offer runs on an instance's read loop and never
// blocks; run publishes. It holds at most one preview per running task.
type previewRelay struct {
	ps       event.Publisher
	log      *slog.Logger
	interval time.Duration
	kick     chan struct{} // capacity 1

	// mu guards pending and sent.
	mu      sync.Mutex
	pending map[string]pendingPreview // by task id: the latest preview not yet published
	sent    map[string]time.Time      // by task id: when its last preview was published
}

// pendingPreview is a preview waiting for its turn; it is encoded only
// when published, so the ones replaced cost nothing.
type pendingPreview struct {
	owner string
	data  event.TaskPreviewData
}

func newPreviewRelay(ps event.Publisher, log *slog.Logger) *previewRelay {
	return &previewRelay{
		ps: ps, log: log, interval: previewInterval, kick: make(chan struct{}, 1),
		pending: map[string]pendingPreview{}, sent: map[string]time.Time{},
	}
}

// offer queues ev's image as taskID's latest preview, replacing one still
// waiting. Images that are too big or of another format are skipped.
func (p *previewRelay) offer(taskID, owner string, ev comfy.Event) {
	if ev.Image == nil || len(ev.Image) > maxPreviewBytes || (ev.ImageFormat != "jpeg" && ev.ImageFormat != "png") {
		return
	}
	p.mu.Lock()
	p.pending[taskID] = pendingPreview{owner: owner, data: event.TaskPreviewData{TaskID: taskID, NodeID: ev.Node, Format: ev.ImageFormat, Image: ev.Image}}
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// forget drops what the relay holds for taskID: its prompt is done.
func (p *previewRelay) forget(taskID string) {
	p.mu.Lock()
	delete(p.pending, taskID)
	delete(p.sent, taskID)
	p.mu.Unlock()
}

// run publishes previews as they become due until ctx ends.
func (p *previewRelay) run(ctx context.Context) {
	timer := time.NewTimer(p.interval)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-timer.C:
		}
		now := time.Now()
		due, wait := p.due(now)
		for _, pp := range due {
			p.publish(ctx, pp, now)
		}
		if wait > 0 {
			timer.Reset(wait)
		}
	}
}

func (p *previewRelay) publish(ctx context.Context, pp pendingPreview, now time.Time) {
	raw, err := json.Marshal(pp.data)
	if err == nil {
		err = p.ps.Publish(ctx, event.Event{
			Type: event.TypeTaskPreview, Data: raw, TaskID: pp.data.TaskID, Owner: pp.owner, Time: now.UnixMilli(),
		})
	}
	if err != nil && ctx.Err() == nil {
		p.log.WarnContext(ctx, "publish preview failed", "task_id", pp.data.TaskID, "err", err)
	}
}

// due takes the waiting previews whose task may publish again at now and
// marks them published. wait is how long until the next waiting one is due
// (0 when none waits).
func (p *previewRelay) due(now time.Time) (due []pendingPreview, wait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, at := range p.sent {
		if _, waiting := p.pending[id]; !waiting && now.Sub(at) >= p.interval {
			delete(p.sent, id) // keeps sent as small as the running tasks
		}
	}
	for id, pp := range p.pending {
		if next := p.sent[id].Add(p.interval); next.After(now) {
			if wait == 0 || next.Sub(now) < wait {
				wait = next.Sub(now)
			}
			continue
		}
		due = append(due, pp)
		p.sent[id] = now
		delete(p.pending, id)
	}
	return due, wait
}
