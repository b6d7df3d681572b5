package push

import (
	"encoding/json"
	"sync"

	"github.com/comfyfleet/comfyfleet/internal/event"
)

// finalWaiters are the requests waiting for tasks to end (POST /api/tasks
// with ?wait): each registers a channel under its task id, which the hub
// closes when the task's final event passes through it.
type finalWaiters struct {
	mu   sync.Mutex
	byID map[string]map[chan struct{}]struct{}
}

// AwaitFinal returns a channel that is closed when an event says the task
// ended (task_completed, task_failed or task_cancelled), or when the hub's
// subscription was renewed and events may have been missed; the caller then
// reads the task again. stop forgets the channel; call it when done
// waiting. Register before reading the task's state, so an end between the
// read and the wait is not missed.
func (h *Hub) AwaitFinal(taskID string) (ended <-chan struct{}, stop func()) {
	ch := make(chan struct{})
	w := &h.finals
	w.mu.Lock()
	if w.byID == nil {
		w.byID = make(map[string]map[chan struct{}]struct{})
	}
	set := w.byID[taskID]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		w.byID[taskID] = set
	}
	set[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if set, ok := w.byID[taskID]; ok {
			if _, ok := set[ch]; ok {
				delete(set, ch)
				if len(set) == 0 {
					delete(w.byID, taskID)
				}
			}
		}
	}
}

// isFinal reports whether an event ends its task.
func isFinal(typ string) bool {
	return typ == event.TypeTaskCompleted || typ == event.TypeTaskFailed || typ == event.TypeTaskCancelled
}

// wake closes the channels waiting for one task.
func (w *finalWaiters) wake(taskID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.byID[taskID] {
		close(ch)
	}
	delete(w.byID, taskID)
}

// wakeAll closes every waiting channel: events may have been missed.
func (w *finalWaiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.byID {
		for ch := range set {
			close(ch)
		}
	}
	clear(w.byID)
}

// closeKey ends the sessions opened with a revoked API key.
func (h *Hub) closeKey(ev event.Event) {
	var d event.KeyRevokedData
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.KeyID == "" {
		h.log.Error("push: decode key_revoked", "data", string(ev.Data), "err", err)
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.conns {
		if c.client.KeyID == d.KeyID {
			c.stop(reasonRevoked)
		}
	}
}
