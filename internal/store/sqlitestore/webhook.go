package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

const (
	whSubCols      = `id, owner, task_id, url, secret, events, created_at`
	whSubInsertSQL = `INSERT INTO webhook_subs (` + whSubCols + `) VALUES (?, ?, ?, ?, ?, ?, ?)`
	whSubGetSQL    = `SELECT ` + whSubCols + ` FROM webhook_subs WHERE id = ?`
	whSubListSQL   = `SELECT ` + whSubCols + ` FROM webhook_subs
		WHERE task_id = '' AND (:owner = '' OR owner = :owner) ORDER BY created_at, id`
	whSubDeleteSQL = `DELETE FROM webhook_subs WHERE id = ?`

	// whEnqueueSQL adds one delivery per matching subscription in one
	// statement; the primary key (subscription, event) makes it idempotent.
	whEnqueueSQL = `INSERT OR IGNORE INTO webhook_deliveries
		(id, sub_id, event_id, type, task_id, owner, url, secret, payload, state, created_at, next_at, updated_at)
		SELECT id || '.' || :event, id, :event, :type, :task, :owner, url, secret, :payload, 'pending', :now, :now, :now
		FROM webhook_subs
		WHERE ((task_id = :task AND task_id <> '') OR (owner = :owner AND task_id = ''))
			AND (events = '' OR instr(',' || events || ',', ',' || :type || ',') > 0)`

	whDeliveryCols = `id, sub_id, event_id, type, task_id, owner, url, secret, payload, state, attempts, log,
		created_at, next_at, updated_at`
	whClaimSQL = `UPDATE webhook_deliveries SET holder = :holder, next_at = :lease, updated_at = :now
		WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_at <= :now
			ORDER BY next_at, id LIMIT :limit)
		RETURNING ` + whDeliveryCols
	whRecordSQL = `UPDATE webhook_deliveries SET state = :state, attempts = attempts + 1, log = :log,
			next_at = :next, holder = '', updated_at = :now
		WHERE id = :id AND state = 'pending' AND holder = :holder
		RETURNING ` + whDeliveryCols
	// whAnySubSQL tells whether a task's events may have subscribers: most
	// have none, and then cost no payload and no insert.
	whAnySubSQL = `SELECT EXISTS (SELECT 1 FROM webhook_subs WHERE task_id = :task AND task_id <> '')
		OR EXISTS (SELECT 1 FROM webhook_subs WHERE owner = :owner AND task_id = '')`
	whExistsSQL  = `SELECT count(*) FROM webhook_deliveries WHERE id = ?`
	whByTaskSQL  = `SELECT ` + whDeliveryCols + ` FROM webhook_deliveries WHERE task_id = ? ORDER BY created_at, id`
	whNextDueSQL = `SELECT min(next_at) FROM webhook_deliveries WHERE state = 'pending'`
)

// WebhookSubInsert adds a subscription.
func (s *Store) WebhookSubInsert(ctx context.Context, sub *store.WebhookSub) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		_, err := ex.stmt(ctx, s.ws.whSubInsert).ExecContext(ctx, sub.ID, sub.Owner, sub.TaskID, sub.URL, sub.Secret,
			strings.Join(sub.Events, ","), ms(sub.CreatedAt))
		return err
	})
	return wrap(err, "insert webhook subscription %s", sub.ID)
}

func scanWebhookSub(sc scanner) (*store.WebhookSub, error) {
	var sub store.WebhookSub
	var events string
	var created int64
	if err := sc.Scan(&sub.ID, &sub.Owner, &sub.TaskID, &sub.URL, &sub.Secret, &events, &created); err != nil {
		return nil, err
	}
	if events != "" {
		sub.Events = strings.Split(events, ",")
	}
	sub.CreatedAt = fromMS(created)
	return &sub, nil
}

// WebhookSubGet returns one subscription.
func (s *Store) WebhookSubGet(ctx context.Context, id string) (*store.WebhookSub, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "get webhook subscription %s", id)
	}
	defer s.readGate.leave()
	sub, err := scanWebhookSub(s.rs.whSubGet.QueryRowContext(ctx, id))
	return sub, wrap(err, "get webhook subscription %s", id)
}

// WebhookSubList returns the subscriptions for all tasks of an owner.
func (s *Store) WebhookSubList(ctx context.Context, p *store.WebhookSubListParams) ([]*store.WebhookSub, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list webhook subscriptions")
	}
	defer s.readGate.leave()
	rows, err := s.rs.whSubList.QueryContext(ctx, sql.Named("owner", p.Owner))
	if err != nil {
		return nil, wrap(err, "list webhook subscriptions")
	}
	defer rows.Close()
	var out []*store.WebhookSub
	for rows.Next() {
		sub, err := scanWebhookSub(rows)
		if err != nil {
			return nil, wrap(err, "list webhook subscriptions")
		}
		out = append(out, sub)
	}
	return out, wrap(rows.Err(), "list webhook subscriptions")
}

// WebhookSubDelete removes a subscription.
func (s *Store) WebhookSubDelete(ctx context.Context, id string) error {
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		return deleted(ex.stmt(ctx, s.ws.whSubDelete).ExecContext(ctx, id))
	})
	return wrap(err, "delete webhook subscription %s", id)
}

// WebhookEnqueue adds the deliveries of one event, in one write.
func (s *Store) WebhookEnqueue(ctx context.Context, p *store.WebhookEnqueueParams) (int, error) {
	var n int64
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) (err error) {
		n, err = s.webhookEnqueue(ctx, ex, p)
		return err
	})
	if err != nil {
		return 0, wrap(err, "enqueue webhook event %s", p.EventID)
	}
	return int(n), nil
}

// webhookEnqueue adds the deliveries of one event inside the write ex
// runs, and returns how many it added.
func (s *Store) webhookEnqueue(ctx context.Context, ex execer, p *store.WebhookEnqueueParams) (int64, error) {
	res, err := ex.stmt(ctx, s.ws.whEnqueue).ExecContext(ctx, sql.Named("event", p.EventID), sql.Named("type", p.Type),
		sql.Named("task", p.TaskID), sql.Named("owner", p.Owner), sql.Named("payload", p.Payload), sql.Named("now", ms(p.Now)))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queueWebhooks adds, inside the write ex runs, the deliveries of the
// events among evs that have some (store.WebhookEventOf), and returns how
// many it added and the time of the last event that got any. Whether the
// task or its owner has a subscription at all is read first, once per
// task: an event without one costs that read alone.
func (s *Store) queueWebhooks(ctx context.Context, ex execer, evs []event.Event) (n, at int64, err error) {
	var lastTask, lastOwner string
	var checked, found bool
	for _, ev := range evs {
		if ev.TaskID == "" || !webhookEventType(ev.Type) {
			continue
		}
		if !checked || ev.TaskID != lastTask || ev.Owner != lastOwner {
			err := ex.stmt(ctx, s.ws.whAnySub).QueryRowContext(ctx, sql.Named("task", ev.TaskID),
				sql.Named("owner", ev.Owner)).Scan(&found)
			if err != nil {
				return 0, 0, fmt.Errorf("find webhook subscriptions of %s: %w", ev.TaskID, err)
			}
			checked, lastTask, lastOwner = true, ev.TaskID, ev.Owner
		}
		if !found {
			continue
		}
		p, ok := store.WebhookEventOf(ev)
		if !ok {
			continue
		}
		k, err := s.webhookEnqueue(ctx, ex, &p)
		if err != nil {
			return 0, 0, fmt.Errorf("enqueue webhook event %s: %w", p.EventID, err)
		}
		if k > 0 {
			n, at = n+k, ev.Time
		}
	}
	return n, at, nil
}

// webhookEventType tells the types of the events that may have webhook
// deliveries (store.WebhookEventOf decides).
func webhookEventType(typ string) bool {
	switch typ {
	case event.TypeTaskStatus, event.TypeTaskCompleted, event.TypeTaskFailed, event.TypeTaskCancelled:
		return true
	}
	return false
}

func scanDelivery(sc scanner) (*store.WebhookDelivery, error) {
	var d store.WebhookDelivery
	var log string
	var created, next, updated int64
	if err := sc.Scan(&d.ID, &d.SubID, &d.EventID, &d.Type, &d.TaskID, &d.Owner, &d.URL, &d.Secret, &d.Payload,
		&d.State, &d.Attempts, &log, &created, &next, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(log), &d.Log); err != nil {
		return nil, err
	}
	d.CreatedAt, d.NextAt, d.UpdatedAt = fromMS(created), fromMS(next), fromMS(updated)
	return &d, nil
}

// scanDeliveries reads every row of rows and closes it.
func scanDeliveries(rows *sql.Rows) ([]*store.WebhookDelivery, error) {
	defer rows.Close()
	var out []*store.WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// WebhookClaim takes due deliveries under a lease.
func (s *Store) WebhookClaim(ctx context.Context, p *store.WebhookClaimParams) ([]*store.WebhookDelivery, error) {
	var out []*store.WebhookDelivery
	err := s.w.exec(ctx, func(ctx context.Context, ex execer) error {
		rows, err := ex.stmt(ctx, s.ws.whClaim).QueryContext(ctx, sql.Named("holder", p.Holder),
			sql.Named("lease", ms(p.Now.Add(p.LeaseTTL))), sql.Named("now", ms(p.Now)), sql.Named("limit", max(p.Limit, 1)))
		if err != nil {
			return err
		}
		out, err = scanDeliveries(rows)
		return err
	})
	if err != nil {
		return nil, wrap(err, "claim webhook deliveries")
	}
	return out, nil
}

// WebhookRecord records an attempt of a held delivery.
func (s *Store) WebhookRecord(ctx context.Context, p *store.WebhookRecordParams) (*store.WebhookDelivery, error) {
	log, err := json.Marshal(store.TrimWebhookLog(p.Log))
	if err != nil {
		return nil, wrap(err, "record webhook delivery %s", p.ID)
	}
	next := p.NextAt
	if p.State != store.DeliveryPending {
		next = p.Now
	}
	var d *store.WebhookDelivery
	err = s.w.execTx(ctx, func(ctx context.Context, ex execer) error {
		d, err = scanDelivery(ex.stmt(ctx, s.ws.whRecord).QueryRowContext(ctx, sql.Named("state", p.State),
			sql.Named("log", string(log)), sql.Named("next", ms(next)), sql.Named("now", ms(p.Now)),
			sql.Named("id", p.ID), sql.Named("holder", p.Holder)))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var n int
		if err := ex.stmt(ctx, s.ws.whExists).QueryRowContext(ctx, p.ID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		return store.ErrConflict
	})
	if err != nil {
		return nil, wrap(err, "record webhook delivery %s", p.ID)
	}
	return d, nil
}

// WebhookDeliveries returns a task's deliveries, oldest first.
func (s *Store) WebhookDeliveries(ctx context.Context, taskID string) ([]*store.WebhookDelivery, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return nil, wrap(err, "list webhook deliveries of %s", taskID)
	}
	defer s.readGate.leave()
	rows, err := s.rs.whByTask.QueryContext(ctx, taskID)
	if err != nil {
		return nil, wrap(err, "list webhook deliveries of %s", taskID)
	}
	out, err := scanDeliveries(rows)
	return out, wrap(err, "list webhook deliveries of %s", taskID)
}

// WebhookNextDue returns when the next pending delivery is due.
func (s *Store) WebhookNextDue(ctx context.Context) (time.Time, bool, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return time.Time{}, false, wrap(err, "next webhook delivery")
	}
	defer s.readGate.leave()
	var next sql.NullInt64
	if err := s.rs.whNextDue.QueryRowContext(ctx).Scan(&next); err != nil {
		return time.Time{}, false, wrap(err, "next webhook delivery")
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(next.Int64).UTC(), true, nil
}
