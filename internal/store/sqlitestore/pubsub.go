package sqlitestore

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// hub fans events out to the subscriptions of this process. Publish holds
// the read lock while it offers an event to each subscription without
// blocking; removing a subscription (and closing its channel) takes the write
// lock, so no send ever races a close.
type hub struct {
	buffer  int
	dropped atomic.Uint64

	mu sync.RWMutex // guards subs and closed
	// subs are the live subscriptions.
	subs map[*subscription]struct{}
	// closed is set by close; no subscription is added afterwards.
	closed bool
}

func newHub(buffer int) *hub {
	return &hub{buffer: buffer, subs: make(map[*subscription]struct{})}
}

// subscription is one subscriber's bounded queue.
type subscription struct {
	hub     *hub
	ch      chan event.Event
	dropped atomic.Uint64
	// stop unregisters the context callback; set under hub.mu before any
	// close can read it.
	stop func() bool
}

// Publish offers evs to every subscription of this process: transient
// types at once, logged ones once they are in the event log, all logged in
// one transaction. It never blocks on a subscriber: a subscription whose
// buffer is full loses the event, which is counted.
func (s *Store) Publish(ctx context.Context, evs ...event.Event) error {
	var logged []event.Event
	for _, ev := range evs {
		ev.Data = bytes.Clone(ev.Data) // subscribers must not see the caller's later writes
		ev.Seq = 0
		if event.Logged(ev.Type) {
			logged = append(logged, ev)
		} else if err := s.hub.publish(ev); err != nil {
			return err
		}
	}
	if len(logged) == 0 {
		return nil
	}
	if s.hub.isClosed() {
		return fmt.Errorf("sqlitestore: publish %s: %w: store closed", logged[0].Type, store.ErrUnavailable)
	}
	err := s.w.execLogged(ctx, func(ctx context.Context, ex execer) ([]event.Event, error) {
		return s.logEvents(ctx, ex, logged...)
	})
	return wrap(err, "publish %s", logged[0].Type)
}

// publish offers ev to every subscription.
func (h *hub) publish(ev event.Event) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return fmt.Errorf("sqlitestore: publish %s: %w: store closed", ev.Type, store.ErrUnavailable)
	}
	h.offer(ev)
	return nil
}

// fanOut offers logged events, in order, to every subscription; the
// writer calls it once they committed.
func (h *hub) fanOut(evs []event.Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return
	}
	for _, ev := range evs {
		h.offer(ev)
	}
}

// offer gives ev to every subscription without blocking. h.mu must be held.
func (h *hub) offer(ev event.Event) {
	for sub := range h.subs {
		select {
		case sub.ch <- ev:
		default:
			sub.dropped.Add(1)
			h.dropped.Add(1)
		}
	}
}

func (h *hub) isClosed() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.closed
}

// Subscribe receives the events published from now on until the
// subscription is closed, ctx ends or the store is closed. A context that
// already ended is an error.
func (s *Store) Subscribe(ctx context.Context) (store.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: subscribe: %w", err)
	}
	h := s.hub
	sub := &subscription{hub: h, ch: make(chan event.Event, h.buffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("sqlitestore: subscribe: %w: store closed", store.ErrUnavailable)
	}
	h.subs[sub] = struct{}{}
	sub.stop = context.AfterFunc(ctx, func() { sub.Close() })
	return sub, nil
}

// DroppedEvents counts the events dropped, over all subscriptions, because a
// subscriber's buffer was full.
func (s *Store) DroppedEvents() uint64 { return s.hub.dropped.Load() }

// C delivers the events; it is closed when the subscription ends.
func (sub *subscription) C() <-chan event.Event { return sub.ch }

// Dropped counts the events this subscription lost to a full buffer.
func (sub *subscription) Dropped() uint64 { return sub.dropped.Load() }

// Close ends the subscription and closes its channel. It is idempotent.
func (sub *subscription) Close() error {
	h := sub.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[sub]; ok {
		h.remove(sub)
	}
	return nil
}

// remove forgets sub and closes its channel. h.mu must be held.
func (h *hub) remove(sub *subscription) {
	delete(h.subs, sub)
	sub.stop()
	close(sub.ch)
}

// close ends every subscription; later Publish and Subscribe calls fail.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for sub := range h.subs {
		h.remove(sub)
	}
}
