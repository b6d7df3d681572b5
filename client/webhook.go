package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// WebhookTolerance is how far a webhook's timestamp may be from now.
const WebhookTolerance = 5 * time.Minute

// ErrBadSignature says a webhook request was not signed with the secret.
var ErrBadSignature = errors.New("client: webhook signature does not match")

// VerifyWebhook checks a webhook request of the gateway (Standard Webhooks:
// webhook-id, webhook-timestamp, webhook-signature) against the
// subscription's secret ("whsec_..."), over the raw body. Deduplicate on
// the webhook-id header: a retried event keeps its id.
func VerifyWebhook(secret string, h http.Header, body []byte) error {
	return verifyWebhookAt(secret, h, body, time.Now())
}

func verifyWebhookAt(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return fmt.Errorf("client: webhook secret: want whsec_ and base64")
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return fmt.Errorf("%w: missing webhook-id or webhook-timestamp", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > WebhookTolerance || d < -WebhookTolerance {
		return fmt.Errorf("%w: timestamp %s is too far from now", ErrBadSignature, ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, b64, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrBadSignature
}
