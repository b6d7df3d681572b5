package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Settings tune delivery.
type Settings struct {
	// Timeout bounds one attempt, connection and answer included.
	Timeout time.Duration
	// RetryFor bounds the time a delivery is retried, from its event.
	RetryFor time.Duration
	// MinBackoff is the wait after the first failed attempt; each failure
	// doubles it, up to MaxBackoff, and a random part of up to half of it is
	// taken off (jitter), so receivers coming back are not hit all at once.
	MinBackoff, MaxBackoff time.Duration
	// Workers bounds the attempts in flight.
	Workers int
	Policy  Policy
}

// idleWait bounds the wait for work when no delivery is due and no
// webhook_queued event came: an event lost on the way (a Redis restart)
// delays a delivery by at most this.
const idleWait = 5 * time.Second

// Deliverer sends the due deliveries of the store.
type Deliverer struct {
	st       store.Store
	holder   string
	settings Settings
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time
	// done is signalled when an attempt ends (a slot is free).
	done chan struct{}
}

// NewDeliverer returns a deliverer that claims deliveries as holder (the
// replica id).
func NewDeliverer(st store.Store, holder string, s Settings, log *slog.Logger) *Deliverer {
	return &Deliverer{st: st, holder: holder, settings: s, client: NewClient(s.Policy, s.Timeout), log: log, now: time.Now,
		done: make(chan struct{}, 1)}
}

// NewClient returns the HTTP client of webhook requests: no proxy, every
// dialed address checked against p (after name resolution, redirects
// included), at most 5 redirects to http or https, timeout per request.
func NewClient(p Policy, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, Control: p.control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
			}
			return nil
		},
	}
}

// Run delivers until ctx ends, then waits for the attempts in flight.
// It claims when a webhook_queued event comes, when an attempt ends, when
// the next delivery is due, and at least every idleWait.
func (d *Deliverer) Run(ctx context.Context) error {
	sub, err := d.st.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("webhook: subscribe: %w", err)
	}
	defer sub.Close()
	workers := max(d.settings.Workers, 1)
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer d.client.CloseIdleConnections()
	for {
		free := workers - len(slots)
		var timer *time.Timer
		var wait <-chan time.Time
		if free > 0 {
			ds, err := d.st.WebhookClaim(ctx, &store.WebhookClaimParams{
				Holder: d.holder, Limit: free, LeaseTTL: d.leaseTTL(), Now: d.now(),
			})
			if err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "claim webhook deliveries failed", "err", err)
			}
			for _, dl := range ds {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() { <-slots }()
					d.attempt(ctx, dl)
					select {
					case d.done <- struct{}{}:
					default:
					}
				})
			}
			if len(ds) > 0 && len(ds) == free {
				continue // there may be more due
			}
			after := idleWait
			if next, ok, err := d.st.WebhookNextDue(ctx); err == nil && ok {
				after = min(after, max(next.Sub(d.now()), time.Millisecond))
			}
			timer = time.NewTimer(after)
			wait = timer.C
		}
		more := d.waitForWork(ctx, sub, wait)
		if timer != nil {
			timer.Stop()
		}
		if !more {
			return nil
		}
	}
}

// waitForWork waits for a reason to claim: the timer, an attempt's end or a
// webhook_queued event. Other events are read and ignored, so the
// subscription never falls behind. It reports false when ctx ends or the
// subscription closes.
func (d *Deliverer) waitForWork(ctx context.Context, sub store.Subscription, timer <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer:
			return true
		case <-d.done:
			return true
		case ev, ok := <-sub.C():
			if !ok {
				return false
			}
			if ev.Type == EventQueued {
				return true
			}
		}
	}
}

// leaseTTL holds a claimed delivery past its attempt's longest time.
func (d *Deliverer) leaseTTL() time.Duration { return d.settings.Timeout + 30*time.Second }

// attempt sends one delivery and records the outcome.
func (d *Deliverer) attempt(ctx context.Context, dl *store.WebhookDelivery) {
	start := d.now()
	status, err := d.send(ctx, dl, start)
	a := store.WebhookAttempt{At: start.UTC().Truncate(time.Millisecond), Status: status, Duration: d.now().Sub(start).Milliseconds()}
	p := &store.WebhookRecordParams{ID: dl.ID, Holder: d.holder, Now: d.now()}
	switch {
	case err == nil && status >= 200 && status < 300:
		p.State = store.DeliveryDelivered
	case ctx.Err() != nil:
		// The gateway stops: the delivery is due again at once, for the
		// next replica or start.
		a.Error = "gateway stopping"
		p.State, p.NextAt = store.DeliveryPending, p.Now
	default:
		a.Error = errText(status, err)
		p.State, p.NextAt = d.retry(dl, status, p.Now)
		if p.State == store.DeliveryFailed {
			d.log.WarnContext(ctx, "webhook delivery given up", "delivery_id", dl.ID, "task_id", dl.TaskID,
				"attempts", dl.Attempts+1, "last_error", a.Error)
		}
	}
	p.Log = append(dl.Log, a)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := d.st.WebhookRecord(rctx, p); err != nil {
		d.log.WarnContext(ctx, "record webhook attempt failed", "delivery_id", dl.ID, "err", err)
	}
}

// send makes one request and returns the answer's status.
func (d *Deliverer) send(ctx context.Context, dl *store.WebhookDelivery, at time.Time) (int, error) {
	ts := at.Unix()
	sig, err := Sign(dl.Secret, dl.EventID, ts, dl.Payload)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(dl.Payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ComfyFleet-Webhooks/1")
	req.Header.Set("webhook-id", dl.EventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// retry decides what follows a failed attempt: 410 Gone ends it, anything
// else is tried again after the backoff, unless that passes RetryFor.
func (d *Deliverer) retry(dl *store.WebhookDelivery, status int, now time.Time) (string, time.Time) {
	if status == http.StatusGone {
		return store.DeliveryFailed, time.Time{}
	}
	next := now.Add(Backoff(dl.Attempts+1, d.settings.MinBackoff, d.settings.MaxBackoff))
	if next.After(dl.CreatedAt.Add(d.settings.RetryFor)) {
		return store.DeliveryFailed, time.Time{}
	}
	return store.DeliveryPending, next
}

// Backoff is the wait after the n-th failed attempt (n >= 1): min doubled
// n-1 times, capped at max, less a random part of up to half of it.
func Backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if half := int64(d / 2); half > 0 {
		d -= time.Duration(rand.Int64N(half + 1))
	}
	return d
}

func errText(status int, err error) string {
	if err != nil {
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return "timeout: " + err.Error()
		}
		return err.Error()
	}
	return "HTTP " + strconv.Itoa(status)
}
