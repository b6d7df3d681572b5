package dispatch

import (
	"testing"
	"time"
)

func TestQueueMemory(t *testing.T) {
	var m queueMemory
	now := time.Now()
	if m.knownEmpty(now) {
		t.Fatal("empty before any claim")
	}
	mark := m.mark()
	m.onQueued() // a task announced while the claim ran: it may have missed it
	m.sawEmpty(mark, now)
	if m.knownEmpty(now) {
		t.Error("empty although a task was queued during the claim")
	}
	mark = m.mark()
	m.sawEmpty(mark, now)
	if !m.knownEmpty(now) {
		t.Error("not empty right after a claim found nothing")
	}
	if m.knownEmpty(now.Add(queueMemoryTTL)) {
		t.Error("still empty after queueMemoryTTL: a lost task_queued would strand its task")
	}
	m.onQueued()
	if m.knownEmpty(now) {
		t.Error("empty after a task was queued")
	}
}
