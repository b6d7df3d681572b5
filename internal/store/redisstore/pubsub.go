package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// eventHeader is an event on the wire without its Data. A message is the
// header as JSON, a newline, then Data byte for byte (JSON never holds a raw
// newline, so the first one ends the header).
type eventHeader struct {
	Type   string `json:"t"`
	TaskID string `json:"k,omitempty"`
	Owner  string `json:"o,omitempty"`
	Time   int64  `json:"ts"`
	// NoData tells a nil Data from an empty one.
	NoData bool `json:"n,omitempty"`
}

func encodeEvent(ev event.Event) ([]byte, error) {
	h, err := json.Marshal(eventHeader{Type: ev.Type, TaskID: ev.TaskID, Owner: ev.Owner, Time: ev.Time, NoData: ev.Data == nil})
	if err != nil {
		return nil, err
	}
	return append(append(h, '\n'), ev.Data...), nil
}

func decodeEvent(msg string) (event.Event, error) {
	head, data, ok := bytes.Cut([]byte(msg), []byte{'\n'})
	if !ok {
		return event.Event{}, errors.New("event without header")
	}
	var h eventHeader
	if err := json.Unmarshal(head, &h); err != nil {
		return event.Event{}, fmt.Errorf("event header: %w", err)
	}
	ev := event.Event{Type: h.Type, TaskID: h.TaskID, Owner: h.Owner, Time: h.Time}
	if !h.NoData {
		ev.Data = data
	}
	return ev, nil
}

// Publish sends ev to every subscriber of every replica (Redis PUBLISH).
func (s *Store) Publish(ctx context.Context, ev event.Event) error {
	if err := s.checkOpen("publish " + ev.Type); err != nil {
		return err
	}
	msg, err := encodeEvent(ev)
	if err != nil {
		return fmt.Errorf("redisstore: publish %s: %w", ev.Type, err)
	}
	return wrap(s.rdb.Publish(ctx, s.keys.events(), msg).Err(), "publish %s", ev.Type)
}

// forwardBuffer is go-redis's buffer between its connection reader and
// ours; ours never blocks, so it stays nearly empty.
const forwardBuffer = 64

// subscription is one subscriber: a dedicated Redis connection (go-redis
// keeps it subscribed across reconnects) and a bounded queue.
type subscription struct {
	store   *Store
	ps      *redis.PubSub
	ch      chan event.Event
	done    chan struct{} // closed when forward has closed ch
	closing atomic.Bool   // set by Close; forward drops what is left
	dropped atomic.Uint64
	// stop unregisters the context callback once Subscribe stored it.
	stop      atomic.Pointer[func() bool]
	closeOnce sync.Once
}

// Subscribe receives every event published from now on. It returns once
// Redis confirmed the subscription, so an event published after it returns
// is delivered. A context that already ended is an error.
func (s *Store) Subscribe(ctx context.Context) (store.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redisstore: subscribe: %w", err)
	}
	if err := s.checkOpen("subscribe"); err != nil {
		return nil, err
	}
	ps := s.rdb.Subscribe(ctx, s.keys.events())
	if err := confirm(ctx, ps); err != nil {
		ps.Close()
		return nil, wrap(err, "subscribe")
	}
	sub := &subscription{store: s, ps: ps, ch: make(chan event.Event, s.buffer), done: make(chan struct{})}
	go sub.forward(ps.Channel(redis.WithChannelSize(forwardBuffer)))
	if !s.register(sub) {
		sub.Close()
		return nil, fmt.Errorf("redisstore: subscribe: %w: store closed", store.ErrUnavailable)
	}
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	sub.stop.Store(&stop)
	return sub, nil
}

// confirm waits for Redis to confirm the subscription.
func confirm(ctx context.Context, ps *redis.PubSub) error {
	msg, err := ps.Receive(ctx)
	if err != nil {
		return err
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return fmt.Errorf("unexpected %T before the subscription was confirmed", msg)
	}
	return nil
}

// register adds sub to the live subscriptions unless the store is closed.
func (s *Store) register(sub *subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.subs[sub] = struct{}{}
	return true
}

func (s *Store) unregister(sub *subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, sub)
}

// DroppedEvents counts the events dropped, over all subscriptions, because
// a subscriber's buffer was full (or a message could not be decoded).
func (s *Store) DroppedEvents() uint64 { return s.dropped.Load() }

// forward moves messages from go-redis to the subscriber without ever
// blocking: an event that does not fit the buffer is dropped and counted.
// It closes ch when go-redis closes in, which Close causes.
func (sub *subscription) forward(in <-chan *redis.Message) {
	defer close(sub.done)
	defer close(sub.ch)
	for msg := range in {
		if sub.closing.Load() {
			continue
		}
		ev, err := decodeEvent(msg.Payload)
		if err != nil {
			sub.drop()
			continue
		}
		select {
		case sub.ch <- ev:
		default:
			sub.drop()
		}
	}
}

func (sub *subscription) drop() {
	sub.dropped.Add(1)
	sub.store.dropped.Add(1)
}

// C delivers the events; it is closed when the subscription ends.
func (sub *subscription) C() <-chan event.Event { return sub.ch }

// Dropped counts the events this subscription lost.
func (sub *subscription) Dropped() uint64 { return sub.dropped.Load() }

// Close ends the subscription: it closes its connection and waits until C
// is closed. It is idempotent.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() {
		sub.closing.Store(true)
		sub.ps.Close()
		<-sub.done
		sub.store.unregister(sub)
		if stop := sub.stop.Load(); stop != nil {
			(*stop)()
		}
	})
	return nil
}
