package dispatch

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/blob"
)

// filesHealth follows whether the file store takes writes. An output copy
// that fails to write marks it down: the replica then claims no new task
// (finished work would only pile up behind it) and a probe write is tried
// every probeEvery until one succeeds.
type filesHealth struct {
	blob blob.Store
	log  *slog.Logger
	wake func()
	// kick wakes the probe loop when the store goes down.
	kick chan struct{}

	// mu guards the fields below.
	mu   sync.Mutex
	down bool
	why  string
	// up is closed when the store takes writes again; replaced on each failure.
	up chan struct{}
}

func newFilesHealth(b blob.Store, log *slog.Logger, wake func()) *filesHealth {
	up := make(chan struct{})
	close(up)
	return &filesHealth{blob: b, log: log, wake: wake, kick: make(chan struct{}, 1), up: up}
}

// probeEvery is the wait between probe writes while the file store is down.
const probeEvery = time.Second

// probeID names the blob the probe writes and deletes.
const probeID = "write-probe"

// Writable reports whether the file store takes writes, and if not, why.
func (f *filesHealth) Writable() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.down, f.why
}

// writable returns a channel closed once the file store takes writes.
func (f *filesHealth) writable() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up
}

// failed records a write failure.
func (f *filesHealth) failed(ctx context.Context, err error) {
	f.mu.Lock()
	first := !f.down
	if first {
		f.down, f.up = true, make(chan struct{})
	}
	f.why = describeWriteError(err)
	f.mu.Unlock()
	if first {
		f.log.WarnContext(ctx, "file store cannot take writes; no new task is claimed until it can", "err", err)
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// run probes the file store while it is down, until ctx ends.
func (f *filesHealth) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.kick:
		}
		for !f.probe(ctx) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(probeEvery):
			}
		}
	}
}

// probe writes and deletes a small blob; true once the store takes it.
func (f *filesHealth) probe(ctx context.Context) bool {
	if _, err := f.blob.Put(ctx, probeID, strings.NewReader("ok"), 0); err != nil {
		f.mu.Lock()
		f.why = describeWriteError(err)
		f.mu.Unlock()
		return false
	}
	_ = f.blob.Delete(ctx, probeID)
	f.mu.Lock()
	if f.down {
		f.down, f.why = false, ""
		close(f.up)
	}
	f.mu.Unlock()
	f.log.InfoContext(ctx, "file store takes writes again")
	f.wake()
	return true
}
