// Package webhook delivers task events to the URLs users subscribe: the
// event types, the deliverer that sends the deliveries the store queued
// with the events (store.WebhookStore) (signed after the Standard Webhooks convention,
// retried with exponential backoff and jitter for a bounded time), and the
// outbound policy that keeps those requests off private, loopback and
// link-local addresses unless the operator allows them.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// SecretPrefix starts every signing secret; base64 of the key follows.
const SecretPrefix = "whsec_"

// NewSecret returns a new signing secret: 24 random bytes in base64 after
// SecretPrefix.
func NewSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// CheckSecret reports whether s is a usable secret: SecretPrefix and the
// base64 of 24 to 64 bytes.
func CheckSecret(s string) error {
	_, err := secretKey(s)
	return err
}

func secretKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("want %q and base64", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("want %q and base64: %w", SecretPrefix, err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("want a key of 24 to 64 bytes, got %d", len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature header of a message: "v1," and the
// base64 HMAC-SHA256 of "id.timestamp.body" keyed with the secret's bytes.
func Sign(secret, id string, timestamp int64, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", fmt.Errorf("webhook: sign: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
