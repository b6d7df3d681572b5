package sqlitestore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// The event log: the events table, numbered by its AUTOINCREMENT seq. A
// logged event is inserted by the write that reports it and delivered to
// the subscriptions by the writer once that write committed, in seq order.

const (
	eventInsertSQL = `INSERT INTO events (type, task_id, owner, time, data) VALUES (?, ?, ?, ?, ?) RETURNING seq`
	eventTrimSQL   = `DELETE FROM events WHERE seq <= ?`
	eventsAfterSQL = `SELECT seq, type, task_id, owner, time, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?`
	eventFirstSQL  = `SELECT coalesce(min(seq), 0) FROM events`
	eventLastSQL   = `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)`
)

// maxTrimEvery bounds how many events are logged between two trims of the
// log: a trim deletes what passed the size since the last one.
const maxTrimEvery = 64

// ownEvents copies events a caller gave for logging: subscribers must not
// see the caller's later writes, and the log numbers them.
func ownEvents(evs []event.Event) []event.Event {
	out := make([]event.Event, len(evs))
	for i, ev := range evs {
		ev.Data = bytes.Clone(ev.Data)
		ev.Seq = 0
		out[i] = ev
	}
	return out
}

// logEvents appends evs to the event log inside the write ex runs and
// queues the webhook deliveries of those that have some; it returns them
// numbered, followed, when any delivery was queued, by the
// webhook_queued event that wakes the deliverers, logged too.
func (s *Store) logEvents(ctx context.Context, ex execer, evs ...event.Event) ([]event.Event, error) {
	for i := range evs {
		if err := s.logEvent(ctx, ex, &evs[i]); err != nil {
			return nil, err
		}
	}
	n, at, err := s.queueWebhooks(ctx, ex, evs)
	if err != nil || n == 0 {
		return evs, err
	}
	wake := event.Event{Type: event.TypeWebhookQueued, Time: at}
	if err := s.logEvent(ctx, ex, &wake); err != nil {
		return nil, err
	}
	return append(evs, wake), nil
}

// logEvent appends ev to the event log inside the write ex runs and sets
// its number, trimming the log every so often.
func (s *Store) logEvent(ctx context.Context, ex execer, ev *event.Event) error {
	var data any
	if ev.Data != nil {
		data = []byte(ev.Data)
	}
	err := ex.stmt(ctx, s.ws.eventInsert).QueryRowContext(ctx, ev.Type, ev.TaskID, ev.Owner, ev.Time, data).Scan(&ev.Seq)
	if err != nil {
		return fmt.Errorf("log %s: %w", ev.Type, err)
	}
	trimEvery := min(maxTrimEvery, s.logSize)
	if ev.Seq%trimEvery == 0 && ev.Seq > s.logSize {
		if _, err := ex.stmt(ctx, s.ws.eventTrim).ExecContext(ctx, ev.Seq-s.logSize); err != nil {
			return fmt.Errorf("trim the event log: %w", err)
		}
	}
	return nil
}

// EventsAfter returns the logged events numbered above p.After, oldest first.
func (s *Store) EventsAfter(ctx context.Context, p *store.EventsAfterParams) ([]event.Event, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "read events after %d", p.After)
	}
	defer s.readGate.leave()
	evs, err := s.eventsAfter(ctx, p.After, store.EventsPageLimit(p.Limit))
	if err != nil {
		return nil, wrap(err, "read events after %d", p.After)
	}
	if len(evs) > 0 && evs[0].Seq == p.After+1 {
		return evs, nil
	}
	// Something is missing before the first row, or nothing came: were
	// the events after p.After trimmed?
	var first, last int64
	if err := s.rs.eventFirst.QueryRowContext(ctx).Scan(&first); err != nil {
		return nil, wrap(err, "read events after %d", p.After)
	}
	if err := s.rs.eventLast.QueryRowContext(ctx).Scan(&last); err != nil {
		return nil, wrap(err, "read events after %d", p.After)
	}
	if p.After < last && (first == 0 || p.After+1 < first) {
		return nil, fmt.Errorf("sqlitestore: read events after %d: %w (oldest kept %d)", p.After, store.ErrEventsGone, first)
	}
	return evs, nil
}

func (s *Store) eventsAfter(ctx context.Context, after int64, limit int) ([]event.Event, error) {
	rows, err := s.rs.eventsAfter.QueryContext(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var evs []event.Event
	for rows.Next() {
		var ev event.Event
		var data []byte
		if err := rows.Scan(&ev.Seq, &ev.Type, &ev.TaskID, &ev.Owner, &ev.Time, &data); err != nil {
			return nil, err
		}
		if data != nil {
			ev.Data = data
		}
		evs = append(evs, ev)
	}
	return evs, rows.Err()
}

// LastEventSeq is the number of the newest logged event.
func (s *Store) LastEventSeq(ctx context.Context) (int64, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return 0, wrap(err, "read the last event's number")
	}
	defer s.readGate.leave()
	var last int64
	err = s.rs.eventLast.QueryRowContext(ctx).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return last, wrap(err, "read the last event's number")
}
