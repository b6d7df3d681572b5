package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/webhook"
)

// maxWebhooksPerUser bounds a user's subscriptions for all tasks.
const maxWebhooksPerUser = 20

// webhookRequest is the body of POST /api/webhooks and a task's "webhook".
type webhookRequest struct {
	URL string `json:"url"`
	// Events are the event types to deliver (webhook.EventTypes); empty
	// for a task's end (webhook.DefaultEvents).
	Events []string `json:"events"`
	// Secret signs the deliveries; empty: the gateway makes one and shows it once.
	Secret string `json:"secret"`
}

// webhookView is a subscription as the API shows it; Secret only in the
// answer that created it.
type webhookView struct {
	ID        string   `json:"id"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	TaskID    string   `json:"taskId,omitempty"`
	Owner     string   `json:"owner"`
	Secret    string   `json:"secret,omitempty"`
	CreatedAt string   `json:"createdAt"`
}

func makeWebhookView(sub *store.WebhookSub) webhookView {
	return webhookView{ID: sub.ID, URL: sub.URL, Events: sub.Events, TaskID: sub.TaskID, Owner: sub.Owner,
		CreatedAt: formatTime(sub.CreatedAt)}
}

// deliveryView is one delivery of the log.
type deliveryView struct {
	ID            string                 `json:"id"`
	WebhookID     string                 `json:"webhookId"`
	EventID       string                 `json:"eventId"`
	Type          string                 `json:"type"`
	URL           string                 `json:"url"`
	State         string                 `json:"state"`
	Attempts      int                    `json:"attempts"`
	LastStatus    int                    `json:"lastStatus"`
	LastError     string                 `json:"lastError,omitempty"`
	NextAttemptAt *string                `json:"nextAttemptAt"`
	CreatedAt     string                 `json:"createdAt"`
	UpdatedAt     string                 `json:"updatedAt"`
	Log           []store.WebhookAttempt `json:"log"`
}

func makeDeliveryView(d *store.WebhookDelivery) deliveryView {
	v := deliveryView{ID: d.ID, WebhookID: d.SubID, EventID: d.EventID, Type: d.Type, URL: d.URL, State: d.State,
		Attempts: d.Attempts, CreatedAt: formatTime(d.CreatedAt), UpdatedAt: formatTime(d.UpdatedAt), Log: d.Log}
	if v.Log == nil {
		v.Log = []store.WebhookAttempt{}
	}
	if n := len(d.Log); n > 0 {
		v.LastStatus, v.LastError = d.Log[n-1].Status, d.Log[n-1].Error
	}
	if d.State == store.DeliveryPending {
		v.NextAttemptAt = timePtr(d.NextAt)
	}
	return v
}

// checkWebhook validates a subscription request and builds it (without ID
// and TaskID); field names the request's field in errors.
func (s *Server) checkWebhook(ctx context.Context, req *webhookRequest, field, owner string) (*store.WebhookSub, error) {
	if req.URL == "" {
		return nil, fieldError(field+".url", "is required")
	}
	if err := s.deps.Webhooks.CheckURL(ctx, req.URL); err != nil {
		if errors.Is(err, webhook.ErrRefused) {
			return nil, &Error{Status: http.StatusBadRequest, Code: "webhook_url_refused",
				Message: field + ".url: " + err.Error() + "; webhooks reach public addresses only (an operator can allow others: webhooks.allowPrivate, webhooks.allowedNetworks)",
				Data:    map[string]string{"field": field + ".url"}}
		}
		return nil, fieldError(field+".url", err.Error())
	}
	events := req.Events
	if len(events) == 0 {
		events = webhook.DefaultEvents
	}
	for _, e := range events {
		if !slices.Contains(webhook.EventTypes, e) {
			return nil, fieldError(field+".events", "unknown event "+e+"; use "+strings.Join(webhook.EventTypes, ", "))
		}
	}
	secret := req.Secret
	if secret == "" {
		secret = webhook.NewSecret()
	} else if err := webhook.CheckSecret(secret); err != nil {
		return nil, fieldError(field+".secret", err.Error())
	}
	return &store.WebhookSub{URL: req.URL, Events: slices.Compact(slices.Sorted(slices.Values(events))),
		Secret: secret, Owner: owner, CreatedAt: s.now()}, nil
}

// createWebhook is POST /api/webhooks: a subscription to events of all the
// caller's tasks. The answer holds the signing secret, shown only here.
func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) error {
	var req webhookRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	ctx, c := r.Context(), claims(r)
	sub, err := s.checkWebhook(ctx, &req, "webhook", c.Username)
	if err != nil {
		return err
	}
	have, err := s.deps.Store.WebhookSubList(ctx, &store.WebhookSubListParams{Owner: c.Username})
	if err != nil {
		return err
	}
	if len(have) >= maxWebhooksPerUser {
		return errorf(http.StatusTooManyRequests, "quota_exceeded", "A user has at most %d webhooks; delete one first.", maxWebhooksPerUser)
	}
	sub.ID = "wh_" + uuid.NewString()
	if err := s.deps.Store.WebhookSubInsert(ctx, sub); err != nil {
		return err
	}
	v := makeWebhookView(sub)
	v.Secret = sub.Secret
	return writeJSON(w, v) // 200, as every success (the contract)
}

// listWebhooks is GET /api/webhooks: the caller's subscriptions (every
// user's for an admin), without their secrets.
func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	p := &store.WebhookSubListParams{}
	if c := claims(r); !c.IsAdmin() {
		p.Owner = c.Username
	}
	subs, err := s.deps.Store.WebhookSubList(r.Context(), p)
	if err != nil {
		return err
	}
	items := make([]webhookView, 0, len(subs))
	for _, sub := range subs {
		items = append(items, makeWebhookView(sub))
	}
	return writeJSON(w, map[string]any{"items": items})
}

// deleteWebhook is DELETE /api/webhooks/{id}. Deliveries already queued
// are still made.
func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	ctx, c, id := r.Context(), claims(r), r.PathValue("id")
	sub, err := s.deps.Store.WebhookSubGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !c.IsAdmin() && sub.Owner != c.Username) {
		return errorf(http.StatusNotFound, "webhook_not_found", "No webhook %q.", id)
	}
	if err != nil {
		return err
	}
	if err := s.deps.Store.WebhookSubDelete(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return writeJSON(w, map[string]string{"id": id})
}

// taskWebhooks is GET /api/tasks/{id}/webhooks: the task's deliveries,
// oldest first, each with its attempts and their response codes.
func (s *Server) taskWebhooks(w http.ResponseWriter, r *http.Request) error {
	t, err := s.ownTask(r)
	if err != nil {
		return err
	}
	ds, err := s.deps.Store.WebhookDeliveries(r.Context(), t.ID)
	if err != nil {
		return err
	}
	items := make([]deliveryView, 0, len(ds))
	for _, d := range ds {
		items = append(items, makeDeliveryView(d))
	}
	return writeJSON(w, map[string]any{"taskId": t.ID, "items": items})
}
