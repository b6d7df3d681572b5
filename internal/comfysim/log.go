package comfysim

import (
	"context"
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// Outcomes of a Run.
const (
	OutcomeRunning     = "running"     // still executing
	OutcomeSuccess     = "success"     // execution_success
	OutcomeError       = "error"       // execution_error
	OutcomeInterrupted = "interrupted" // execution_interrupted
	OutcomeAborted     = "aborted"     // the instance stopped mid-run; no history was written
)

// Run is one execution of a prompt: from the worker picking it up to its
// history being written (or the instance going away).
type Run struct {
	Instance string
	Start    time.Time
	End      time.Time // zero while running
	Outcome  string
}

// StreamedImage is one image a SaveImageWebsocket node sent over the
// WebSocket: such images are nowhere else, so a test compares what a
// client kept with this.
type StreamedImage struct {
	Node   string
	Format string // "png"
	Size   int
	SHA256 [32]byte
}

// Log records every execution of every prompt_id. One Log can be shared by
// many instances, which is how a test proves a gateway never ran a task
// twice, or on two instances at once.
type Log struct {
	// mu guards runs, images, order and changed.
	mu      sync.Mutex
	runs    map[string][]Run
	images  map[string][]StreamedImage
	order   []string      // prompt ids by first start
	changed chan struct{} // closed and replaced on every change
}

// NewLog returns an empty execution log.
func NewLog() *Log {
	return &Log{runs: map[string][]Run{}, images: map[string][]StreamedImage{}, changed: make(chan struct{})}
}

// streamed records an image sent by a SaveImageWebsocket node (its hash
// only: the log lives as long as a benchmark).
func (l *Log) streamed(id, node, format string, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.images[id] = append(l.images[id], StreamedImage{Node: node, Format: format, Size: len(data), SHA256: sha256.Sum256(data)})
	l.notify()
}

// Streamed returns the images SaveImageWebsocket nodes sent for promptID,
// in the order they were sent, over all its executions.
func (l *Log) Streamed(promptID string) []StreamedImage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.images[promptID])
}

func (l *Log) start(id, instance string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.runs[id]; !ok {
		l.order = append(l.order, id)
	}
	l.runs[id] = append(l.runs[id], Run{Instance: instance, Start: t, Outcome: OutcomeRunning})
	l.notify()
}

func (l *Log) end(id, instance string, start, end time.Time, outcome string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	runs := l.runs[id]
	for i := range runs {
		if runs[i].Instance == instance && runs[i].Start.Equal(start) {
			runs[i].End, runs[i].Outcome = end, outcome
		}
	}
	l.notify()
}

func (l *Log) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Runs returns the executions of promptID, in start order.
func (l *Log) Runs(promptID string) []Run {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.runs[promptID])
}

// Count is how many times promptID started executing, on any instance.
func (l *Log) Count(promptID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.runs[promptID])
}

// PromptIDs returns every prompt_id that ran, by first start.
func (l *Log) PromptIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.order)
}

// Total is the number of executions recorded.
func (l *Log) Total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.runs {
		n += len(r)
	}
	return n
}

// Duplicates returns the prompt_ids that started more than once.
func (l *Log) Duplicates() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, id := range l.order {
		if len(l.runs[id]) > 1 {
			ids = append(ids, id)
		}
	}
	return ids
}

// Overlaps returns the prompt_ids that were executing on two instances at
// the same moment (a run still executing counts as open-ended).
func (l *Log) Overlaps() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, id := range l.order {
		if overlapping(l.runs[id]) {
			ids = append(ids, id)
		}
	}
	return ids
}

func overlapping(runs []Run) bool {
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.Instance != b.Instance && before(a.Start, b) && before(b.Start, a) {
				return true
			}
		}
	}
	return false
}

// before reports whether t is before r ends.
func before(t time.Time, r Run) bool { return r.End.IsZero() || t.Before(r.End) }

// Wait blocks until cond returns true or ctx ends. cond is called after every
// change and may call any Log method.
func (l *Log) Wait(ctx context.Context, cond func(*Log) bool) error {
	for {
		l.mu.Lock()
		ch := l.changed
		l.mu.Unlock()
		if cond(l) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitFinished blocks until promptID has at least n finished runs.
func (l *Log) WaitFinished(ctx context.Context, promptID string, n int) error {
	return l.Wait(ctx, func(l *Log) bool {
		done := 0
		for _, r := range l.Runs(promptID) {
			if r.Outcome != OutcomeRunning {
				done++
			}
		}
		return done >= n
	})
}
