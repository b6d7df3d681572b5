package dispatch

import (
	"sync"
	"time"
)

// queueMemory remembers that the queue was found empty, so that the wakes
// that cannot bring work (ComfyUI's status frames, runs ending, instances
// connecting: several per task) do not each cost a claim, a write
// transaction in the store, when nothing is pending. It counts the
// task_queued events: a claim that found nothing pending at all, started
// after the n-th, proves the queue empty until the next one. Every way a
// task becomes pending (submit, requeue, give back) publishes task_queued
// after its write, so a task pending before the claim started was either
// seen by it or announces itself after. An event lost on the way (a Redis
// subscription that reconnects) would leave a task unseen, so the memory
// also lasts at most queueMemoryTTL: the next wake after it claims again.
type queueMemory struct {
	mu     sync.Mutex
	queued uint64 // task_queued events seen
	empty  bool   // a claim found nothing pending after the queued-th event
	at     uint64
	until  time.Time
}

// queueMemoryTTL bounds how long an empty queue is believed without a claim.
const queueMemoryTTL = time.Second

// onQueued counts a task_queued event.
func (m *queueMemory) onQueued() {
	m.mu.Lock()
	m.queued++
	m.mu.Unlock()
}

// mark returns the event count to pass to sawEmpty once the claim that
// follows found nothing pending.
func (m *queueMemory) mark() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queued
}

// sawEmpty records a claim started at mark that found nothing pending.
func (m *queueMemory) sawEmpty(mark uint64, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mark == m.queued {
		m.empty, m.at, m.until = true, mark, now.Add(queueMemoryTTL)
	}
}

// knownEmpty reports whether a claim now would find nothing pending.
func (m *queueMemory) knownEmpty(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.empty && m.at == m.queued && now.Before(m.until)
}
