package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

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
	// Seq is set by logEventScript, which writes it first.
	Seq int64 `json:"s,omitempty"`
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
	ev := event.Event{Type: h.Type, TaskID: h.TaskID, Owner: h.Owner, Time: h.Time, Seq: h.Seq}
	if !h.NoData {
		ev.Data = data
	}
	return ev, nil
}

// Publish sends evs to every subscriber of every replica (Redis PUBLISH):
// transient types at once, logged ones numbered and appended to the event
// log in one script.
func (s *Store) Publish(ctx context.Context, evs ...event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if err := s.checkOpen("publish " + evs[0].Type); err != nil {
		return err
	}
	args := []any{s.keys.prefix, s.keys.events(), s.logSize}
	first := ""
	for _, ev := range evs {
		if !event.Logged(ev.Type) {
			ev.Seq = 0
			msg, err := encodeEvent(ev)
			if err != nil {
				return fmt.Errorf("redisstore: publish %s: %w", ev.Type, err)
			}
			if err := s.rdb.Publish(ctx, s.keys.events(), msg).Err(); err != nil {
				return wrap(err, "publish %s", ev.Type)
			}
			continue
		}
		if first == "" {
			first = ev.Type
		}
		var err error
		if args, err = eventArgs(args, ev); err != nil {
			return fmt.Errorf("redisstore: publish %s: %w", ev.Type, err)
		}
	}
	if first == "" {
		return nil
	}
	err := logEventScript.Run(ctx, s.rdb, []string{s.keys.eventLog(), s.keys.eventSeq()}, args...).Err()
	return wrap(err, "publish %s", first)
}

// logEventScript numbers events, appends them to the event log, trimmed to
// about its size, and publishes them, in their order, and queues the
// webhook deliveries of the task events among them (luaEventLog).
//
//	KEYS[1] event log stream, KEYS[2] event counter
//	ARGV[1] prefix, ARGV[2] channel, ARGV[3] log size, ARGV[4...] the
//	events, seven arguments each (eventArgs)
var logEventScript = script(luaWebhookKeys, luaWebhookEnqueue, luaEventLog, `
log_events(4, (#ARGV - 3) / 7, KEYS[1], KEYS[2], ARGV[2], ARGV[3])
return 1
`)

// eventArgs appends the seven script arguments of a logged event to args
// (luaEventLog's log_events): encodeEvent's message, without a number,
// then its webhook event (store.WebhookEventOf): id ("" for none), type,
// task, owner, payload and time in ms.
func eventArgs(args []any, ev event.Event) ([]any, error) {
	ev.Seq = 0
	msg, err := encodeEvent(ev)
	if err != nil {
		return nil, err
	}
	p, ok := store.WebhookEventOf(ev)
	if !ok {
		return append(args, msg, "", "", "", "", "", "0"), nil
	}
	return append(args, msg, p.EventID, p.Type, p.TaskID, p.Owner, p.Payload, msArg(p.Now)), nil
}

// EventsAfter returns the logged events numbered above p.After, oldest first.
func (s *Store) EventsAfter(ctx context.Context, p *store.EventsAfterParams) ([]event.Event, error) {
	if err := s.checkOpen("read events"); err != nil {
		return nil, err
	}
	evs, err := s.eventsAfter(ctx, p.After, store.EventsPageLimit(p.Limit))
	if err != nil {
		return nil, wrap(err, "read events after %d", p.After)
	}
	if len(evs) > 0 && evs[0].Seq == p.After+1 {
		return evs, nil
	}
	first, err := s.eventsAfter(ctx, -1, 1)
	if err != nil {
		return nil, wrap(err, "read events after %d", p.After)
	}
	last, err := s.LastEventSeq(ctx)
	if err != nil {
		return nil, err
	}
	if p.After < last && (len(first) == 0 || p.After+1 < first[0].Seq) {
		return nil, fmt.Errorf("redisstore: read events after %d: %w", p.After, store.ErrEventsGone)
	}
	return evs, nil
}

// eventsAfter reads up to limit entries of the event log numbered above
// after; -1 reads from the first kept.
func (s *Store) eventsAfter(ctx context.Context, after int64, limit int) ([]event.Event, error) {
	start := "-"
	if after >= 0 {
		start = fmt.Sprintf("(0-%d", after)
	}
	msgs, err := s.rdb.XRangeN(ctx, s.keys.eventLog(), start, "+", int64(limit)).Result()
	if err != nil {
		return nil, err
	}
	evs := make([]event.Event, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["m"].(string)
		ev, err := decodeEvent(raw)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", m.ID, err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// LastEventSeq is the number of the newest logged event.
func (s *Store) LastEventSeq(ctx context.Context) (int64, error) {
	n, err := s.rdb.Get(ctx, s.keys.eventSeq()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, wrap(err, "read the last event's number")
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
	go sub.forward(ps.ChannelWithSubscriptions(redis.WithChannelSize(forwardBuffer)))
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
//
// Logged events arrive in order; none is lost to pub/sub: when one comes
// numbered past the next expected, or go-redis subscribed again after a
// reconnect (messages published meanwhile are gone), the missing ones are
// read from the event log first.
func (sub *subscription) forward(in <-chan any) {
	defer close(sub.done)
	defer close(sub.ch)
	var last int64 // the last logged event delivered; 0 until the first
	for msg := range in {
		if sub.closing.Load() {
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// Subscribe's own confirmation was read by confirm: this
			// one follows a reconnect, after which nothing may come to
			// reveal the gap.
			if last > 0 {
				last = sub.catchUp(last, 0)
			}
		case *redis.Message:
			ev, err := decodeEvent(m.Payload)
			if err != nil {
				sub.drop()
				continue
			}
			if ev.Seq > 0 {
				if ev.Seq <= last {
					continue // read from the log already
				}
				if last > 0 && ev.Seq > last+1 {
					sub.catchUp(last, ev.Seq) // up to ev.Seq, delivered next
				}
				last = ev.Seq
			}
			sub.offer(ev)
		}
	}
}

// catchUp delivers the logged events numbered above last (and below
// before, unless 0) and returns the last one delivered. A log that cannot
// be read, or that lost them, leaves the gap: the subscriber reads on from
// what it got with EventsAfter, or learns that the events are gone.
func (sub *subscription) catchUp(last, before int64) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	defer cancel()
	for !sub.closing.Load() {
		evs, err := sub.store.eventsAfter(ctx, last, store.MaxEventsPage)
		if err != nil || len(evs) == 0 {
			return last
		}
		for _, ev := range evs {
			if before > 0 && ev.Seq >= before {
				return last
			}
			sub.offer(ev)
			last = ev.Seq
		}
		if len(evs) < store.MaxEventsPage {
			return last
		}
	}
	return last
}

// catchUpTimeout bounds a subscription's reading of the event log after a
// gap.
const catchUpTimeout = 10 * time.Second

func (sub *subscription) offer(ev event.Event) {
	select {
	case sub.ch <- ev:
	default:
		sub.drop()
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
