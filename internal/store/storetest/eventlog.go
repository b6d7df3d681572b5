package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func eventLogCases() []testCase {
	return []testCase{
		{"Numbered", testEventLogNumbered},
		{"ReadAfter", testEventLogReadAfter},
		{"TransientNotLogged", testEventLogTransient},
		{"Empty", testEventLogEmpty},
	}
}

// loggedEvent builds the n-th logged test event with every field set.
func loggedEvent(n int) event.Event {
	return event.Event{
		Type:   event.TypeTaskStatus,
		Data:   []byte(fmt.Sprintf(`{"taskId":"t-%d","status":"running","instanceId":"i","progress":0,"attempts":1}`, n)),
		TaskID: fmt.Sprintf("t-%d", n),
		Owner:  "alice",
		Time:   at(n).UnixMilli(),
	}
}

// numbered is ev as the log keeps it: numbered seq.
func numbered(ev event.Event, seq int64) event.Event {
	ev.Seq = seq
	return ev
}

func testEventLogNumbered(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	for i := 1; i <= 5; i++ {
		publish(t, s, loggedEvent(i))
	}
	for i := 1; i <= 5; i++ {
		diff(t, fmt.Sprintf("event %d delivered", i), numbered(loggedEvent(i), int64(i)), recv(t, sub))
	}
	last, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	if last != 5 {
		t.Errorf("LastEventSeq = %d, want 5", last)
	}
}

func testEventLogReadAfter(t *testing.T, s store.Store) {
	for i := 1; i <= 7; i++ {
		publish(t, s, loggedEvent(i))
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 2, Limit: 3})
	must(t, "EventsAfter 2", err)
	diff(t, "events after 2, 3 of them", []event.Event{
		numbered(loggedEvent(3), 3), numbered(loggedEvent(4), 4), numbered(loggedEvent(5), 5),
	}, got)
	got, err = s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 5})
	must(t, "EventsAfter 5", err)
	diff(t, "events after 5", []event.Event{numbered(loggedEvent(6), 6), numbered(loggedEvent(7), 7)}, got)
	got, err = s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 7})
	must(t, "EventsAfter 7", err)
	if len(got) != 0 {
		t.Errorf("events after the last = %+v, want none", got)
	}
	got, err = s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 0})
	must(t, "EventsAfter 0", err)
	if len(got) != 7 {
		t.Errorf("events after 0: got %d, want all 7", len(got))
	}
}

func testEventLogTransient(t *testing.T, s store.Store) {
	sub := subscribe(t, s, t.Context())
	publish(t, s, loggedEvent(1), testEvent(2), loggedEvent(3))
	diff(t, "logged 1", numbered(loggedEvent(1), 1), recv(t, sub))
	diff(t, "transient 2, not numbered", testEvent(2), recv(t, sub))
	diff(t, "logged 3, numbered next", numbered(loggedEvent(3), 2), recv(t, sub))
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{})
	must(t, "EventsAfter", err)
	diff(t, "the log", []event.Event{numbered(loggedEvent(1), 1), numbered(loggedEvent(3), 2)}, got)
}

func testEventLogEmpty(t *testing.T, s store.Store) {
	last, err := s.LastEventSeq(t.Context())
	must(t, "LastEventSeq", err)
	if last != 0 {
		t.Errorf("LastEventSeq of an empty log = %d, want 0", last)
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{})
	if err != nil || len(got) != 0 {
		t.Errorf("EventsAfter on an empty log = %+v, %v; want none, no error", got, err)
	}
	// A position past the end (a client of another store) is not an error.
	if _, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 42}); errors.Is(err, store.ErrEventsGone) || err != nil {
		t.Errorf("EventsAfter past the end: %v, want no error", err)
	}
}
