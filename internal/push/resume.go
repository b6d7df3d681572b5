package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Resuming. A client that remembers the seq of the last message it handled
// reconnects with /ws?since=<seq>. The connection is registered first, so
// live events start arriving, but those are held while the hub writes, after
// global_status, the events of the log numbered above since that the client
// may see; then the held ones not already written follow, and from there on
// the connection is live and skips any logged event numbered at or below
// what it was sent. So the client gets every event after since once, in
// order. When the log no longer holds the event after since (or since is
// ahead of the log: a position from another store), the client gets resync
// instead and reloads over REST.

// resume is the resume state of a connection opened with ?since=.
type resume struct {
	since int64
	// replaying is true while the backlog is written; live logged events
	// wait in held meanwhile.
	replaying bool
	held      []heldMsg
	// floor is the newest logged event written to the client; later live
	// events at or below it are skipped.
	floor int64
}

// heldMsg is a live logged event that arrived during the replay.
type heldMsg struct {
	seq int64
	msg []byte
}

// parseSince reads ?since= from r: absent is -1 (no resume).
func parseSince(r *http.Request) (int64, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("since %q: want the seq of the last message received, a whole number from 0", v)
	}
	return n, nil
}

// deliver queues a message numbered seq (0 for none) for c, unless c
// resumes and has it already, or holds it until its replay is done.
func (c *conn) deliver(seq int64, msg []byte) {
	if seq > 0 && c.resuming.Load() {
		c.rmu.Lock()
		if c.res.replaying {
			if len(c.res.held) >= cap(c.send) {
				c.rmu.Unlock()
				if c.stop(reasonOverflow) {
					c.hub.overflowed(c)
				}
				return
			}
			c.res.held = append(c.res.held, heldMsg{seq: seq, msg: msg})
			c.rmu.Unlock()
			return
		}
		floor := c.res.floor
		c.rmu.Unlock()
		if seq <= floor {
			return
		}
	}
	c.enqueue(msg)
}

// replay writes the logged events after since that c may see, then the
// held ones, and makes c live. False if the connection failed.
func (c *conn) replay(ctx context.Context) bool {
	h := c.hub
	c.rmu.Lock()
	since := c.res.since
	c.rmu.Unlock()
	last, err := h.sub.LastEventSeq(ctx)
	if err != nil {
		h.log.Warn("push: read the event log for a resuming client", "err", err)
		return c.resync(since, 0)
	}
	if since > last {
		return c.resync(since, last)
	}
	after := since
	for {
		evs, err := h.sub.EventsAfter(ctx, &store.EventsAfterParams{After: after})
		if errors.Is(err, store.ErrEventsGone) {
			return c.resync(since, last)
		}
		if err != nil {
			h.log.Warn("push: read the event log for a resuming client", "err", err)
			return c.resync(since, last)
		}
		for _, ev := range evs {
			after = ev.Seq
			msg, ok := c.backlogMsg(ev)
			if !ok {
				continue
			}
			if err := c.write(msg); err != nil {
				c.fail(err, DropWriteTimeout)
				return false
			}
		}
		if len(evs) < store.MaxEventsPage {
			break
		}
	}
	return c.goLive(after)
}

// backlogMsg encodes a logged event as c may see it; false if c may not.
func (c *conn) backlogMsg(ev event.Event) ([]byte, bool) {
	h := c.hub
	a := event.AudienceOf(ev.Type)
	switch {
	case a == event.Internal:
		return nil, false
	case a == event.TaskOwner && !c.wants(a, &ev):
		return nil, false
	}
	ev.Data = h.opts.EventData(ev)
	msg, err := h.encodeSeq(ev.Type, ev.Time, ev.Data, "", ev.Seq)
	if err != nil {
		return nil, false
	}
	if a == event.Everyone {
		m, err := h.newInstanceMsg(ev, msg)
		if err != nil {
			return nil, false
		}
		msg = m.forClient(c.client)
	}
	return msg, true
}

// resync tells c that it cannot resume from since, and makes it live from
// last (0: from whatever comes).
func (c *conn) resync(since, last int64) bool {
	if err := c.write(c.hub.reply(TypeResync, resyncData{Since: since, Last: last}, "")); err != nil {
		c.fail(err, DropWriteTimeout)
		return false
	}
	return c.goLive(last)
}

// goLive writes the held events numbered above floor and ends the replay.
func (c *conn) goLive(floor int64) bool {
	for {
		c.rmu.Lock()
		held := c.res.held
		c.res.held = nil
		if len(held) == 0 {
			c.res.replaying, c.res.floor = false, floor
			c.rmu.Unlock()
			return true
		}
		c.rmu.Unlock()
		for _, m := range held {
			if m.seq <= floor {
				continue
			}
			if err := c.write(m.msg); err != nil {
				c.fail(err, DropWriteTimeout)
				return false
			}
			floor = m.seq
		}
	}
}
