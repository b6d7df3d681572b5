package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

func statusEvent(n int) event.Event {
	return event.Event{Type: event.TypeTaskStatus, Data: []byte(`{}`), TaskID: fmt.Sprintf("t-%d", n), Time: int64(n)}
}

// TestEventLogTrimmed: the log keeps about its size; reading from a
// position it no longer holds is ErrEventsGone, from one it holds is not.
func TestEventLogTrimmed(t *testing.T) {
	s := open(t, WithEventLogSize(10))
	for i := 1; i <= 500; i++ {
		mustOK(t, s.Publish(t.Context(), statusEvent(i)))
	}
	if _, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 0}); !errors.Is(err, store.ErrEventsGone) {
		t.Errorf("EventsAfter(0) after 500 events in a log of 10: %v, want ErrEventsGone", err)
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 495})
	mustOK(t, err)
	if len(got) != 5 || got[0].Seq != 496 || got[4].Seq != 500 {
		t.Errorf("EventsAfter(495) = %d events from %v, want 496..500", len(got), got)
	}
}

// TestSubscriptionCatchesUpAfterReconnect: events published while a
// subscription's connection is down (pub/sub loses them) are read from the
// log once go-redis subscribed again, in order, none twice.
func TestSubscriptionCatchesUpAfterReconnect(t *testing.T) {
	u := redistest.URL(t)
	name := "evtest-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	s, err := Open(context.Background(), u+sep+"client_name="+name, WithPrefix(redistest.Prefix(t, u)))
	mustOK(t, err)
	t.Cleanup(func() { s.Close() })
	sub, err := s.Subscribe(t.Context())
	mustOK(t, err)
	defer sub.Close()

	mustOK(t, s.Publish(t.Context(), statusEvent(1)))
	if ev := recvEvent(t, sub); ev.Seq != 1 {
		t.Fatalf("first event numbered %d, want 1", ev.Seq)
	}
	killSubscriber(t, name)
	// In one call, right after the kill: most likely all of them before
	// the subscriber is back, so no message after its return shows the gap.
	const n = 50
	var evs []event.Event
	for i := 2; i <= n; i++ {
		evs = append(evs, statusEvent(i))
	}
	mustOK(t, s.Publish(t.Context(), evs...))
	for want := int64(2); want <= n; want++ {
		if ev := recvEvent(t, sub); ev.Seq != want || ev.TaskID != fmt.Sprintf("t-%d", want) {
			t.Fatalf("after the reconnect got %s of %s numbered %d, want t-%d numbered %d", ev.Type, ev.TaskID, ev.Seq, want, want)
		}
	}
}

// killSubscriber closes, on the server, the pub/sub connection of the
// client named name.
func killSubscriber(t *testing.T, name string) {
	t.Helper()
	rdb := admin(t)
	list, err := rdb.ClientList(t.Context()).Result()
	mustOK(t, err)
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") || !strings.Contains(line, " sub=1 ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				mustOK(t, rdb.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err())
				killed++
			}
		}
	}
	if killed == 0 {
		t.Fatalf("no subscribed connection named %s in CLIENT LIST", name)
	}
}
