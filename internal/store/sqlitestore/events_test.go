package sqlitestore

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func statusEvent(n int) event.Event {
	return event.Event{Type: event.TypeTaskStatus, Data: []byte(`{}`), TaskID: fmt.Sprintf("t-%d", n), Time: int64(n)}
}

// TestEventLogTrimmed: the log keeps its size; reading from a position it
// no longer holds is ErrEventsGone, from one it holds is not.
func TestEventLogTrimmed(t *testing.T) {
	s := openFile(t, WithEventLogSize(10))
	for i := 1; i <= 100; i++ {
		if err := s.Publish(t.Context(), statusEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 0}); !errors.Is(err, store.ErrEventsGone) {
		t.Errorf("EventsAfter(0) after 100 events in a log of 10: %v, want ErrEventsGone", err)
	}
	got, err := s.EventsAfter(t.Context(), &store.EventsAfterParams{After: 90})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0].Seq != 91 || got[9].Seq != 100 {
		t.Errorf("EventsAfter(90) = %d events, want 91..100", len(got))
	}
}

// TestEventsDeliveredInLogOrder: events published concurrently (group
// commit batches them) reach a subscriber in the order of their numbers.
func TestEventsDeliveredInLogOrder(t *testing.T) {
	s := openFile(t)
	sub, err := s.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := s.Publish(t.Context(), statusEvent(w*each+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for want := int64(1); want <= writers*each; want++ {
		ev := <-sub.C()
		if ev.Seq != want {
			t.Fatalf("event %d delivered numbered %d", want, ev.Seq)
		}
	}
}
