package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func pubsubCases() []testCase {
	return []testCase{
		{"Delivery", testPubSubDelivery},
		{"TwoSubscribers", testPubSubTwoSubscribers},
		{"OnlyAfterSubscribe", testPubSubOnlyAfterSubscribe},
		{"NoSubscribers", testPubSubNoSubscribers},
		{"Close", testPubSubClose},
		{"ContextEnds", testPubSubContextEnds},
		{"CancelledContext", testPubSubCancelledContext},
		{"SlowSubscriber", testPubSubSlowSubscriber},
	}
}

// testEvent builds the n-th test event with every field set.
func testEvent(n int) event.Event {
	return event.Event{
		Type:   "task_progress",
		Data:   []byte(fmt.Sprintf(`{"taskId":"t-%d","progress":%d,"node":"3"}`, n, n%100)),
		TaskID: fmt.Sprintf("t-%d", n),
		Owner:  "alice",
		Time:   at(n).UnixMilli(),
	}
}

func subscribe(t *testing.T, s store.Store, ctx context.Context) store.Subscription {
	t.Helper()
	sub, err := s.Subscribe(ctx)
	must(t, "Subscribe", err)
	t.Cleanup(func() { sub.Close() })
	return sub
}

func publish(t *testing.T, s store.Store, evs ...event.Event) {
	t.Helper()
	for _, ev := range evs {
		must(t, "Publish", s.Publish(t.Context(), ev))
	}
}

// recv waits for the next event; it fails if the channel closes or nothing comes.
func recv(t *testing.T, sub store.Subscription) event.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.C():
		if !ok {
			t.Fatal("subscription closed, want an event")
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatal("no event within the deadline")
	}
	return event.Event{}
}

// drainClosed reads until the channel closes and returns what it read.
func drainClosed(t *testing.T, ch <-chan event.Event) []event.Event {
	t.Helper()
	var got []event.Event
	deadline := time.After(waitTimeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("subscription channel not closed within the deadline (read %d events)", len(got))
		}
	}
}

func testPubSubDelivery(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	var want []event.Event
	for i := range 50 {
		want = append(want, testEvent(i))
	}
	publish(t, s, want...)
	for i, w := range want {
		diff(t, fmt.Sprintf("event %d", i), w, recv(t, sub))
	}
}

func testPubSubTwoSubscribers(t *testing.T, s store.Store) {
	subs := []store.Subscription{subscribe(t, s, t.Context()), subscribe(t, s, t.Context())}
	want := []event.Event{testEvent(1), testEvent(2), testEvent(3)}
	publish(t, s, want...)
	for i, sub := range subs {
		for j, w := range want {
			diff(t, fmt.Sprintf("subscriber %d event %d", i, j), w, recv(t, sub))
		}
	}
}

func testPubSubOnlyAfterSubscribe(t *testing.T, s store.Store) {
	publish(t, s, testEvent(1))
	sub := subscribe(t, s, t.Context())
	publish(t, s, testEvent(2))
	diff(t, "first event received", testEvent(2), recv(t, sub))
}

func testPubSubNoSubscribers(t *testing.T, s store.Store) {
	publish(t, s, testEvent(1), testEvent(2))
}

func testPubSubClose(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	other := subscribe(t, s, t.Context())
	publish(t, s, testEvent(1))
	diff(t, "before close", testEvent(1), recv(t, sub))

	must(t, "Subscription.Close", sub.Close())
	publish(t, s, testEvent(2))
	for _, ev := range drainClosed(t, sub.C()) {
		t.Errorf("event delivered after Close: %+v", ev)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The other subscription is unaffected.
	diff(t, "other subscriber", testEvent(1), recv(t, other))
	diff(t, "other subscriber", testEvent(2), recv(t, other))
}

func testPubSubContextEnds(t *testing.T, s store.Store) {
	ctx, cancel := ctxWithCancel(t)
	sub := subscribe(t, s, ctx)
	publish(t, s, testEvent(1))
	diff(t, "before cancel", testEvent(1), recv(t, sub))
	cancel()
	drainClosed(t, sub.C())
	publish(t, s, testEvent(2)) // publishing after a subscriber went away still works
}

// testPubSubCancelledContext: Subscribe with a context that already ended
// either fails with the context's error or returns a closed subscription.
func testPubSubCancelledContext(t *testing.T, s store.Store) {
	ctx, cancel := ctxWithCancel(t)
	cancel()
	sub, err := s.Subscribe(ctx)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe with a cancelled context: %v, want context.Canceled", err)
		}
		return
	}
	defer sub.Close()
	drainClosed(t, sub.C())
}

// slowSubscriberEvents overflows the usual per-subscriber buffer (1024)
// twice over.
const slowSubscriberEvents = 2048

// testPubSubSlowSubscriber: a subscriber that never reads does not block
// publishers (delivery to it is best effort). The deadline is generous: a
// networked store pays a round trip per Publish; only a hang fails.
func testPubSubSlowSubscriber(t *testing.T, s store.Store) {
	subscribe(t, s, t.Context()) // never read
	done := make(chan error, 1)
	go func() {
		for i := range slowSubscriberEvents {
			if err := s.Publish(t.Context(), testEvent(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		must(t, "Publish", err)
	case <-time.After(6 * waitTimeout):
		t.Fatal("Publish blocked behind a subscriber that does not read")
	}
}

func storeCases() []testCase {
	return []testCase{
		{"DriverPing", testStoreDriverPing},
		{"Close", testStoreClose},
	}
}

func testStoreDriverPing(t *testing.T, s store.Store) {
	if d := s.Driver(); d != "sqlite" && d != "redis" {
		t.Errorf("Driver() = %q, want sqlite or redis", d)
	}
	must(t, "Ping", s.Ping(t.Context()))
}

// testStoreClose: closing the store ends every subscription and Ping fails.
func testStoreClose(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	must(t, "Close", s.Close())
	drainClosed(t, sub.C())
	if err := s.Ping(t.Context()); err == nil {
		t.Error("Ping after Close = nil, want an error")
	}
}
