package client

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestVerifyWebhook uses the example of the Standard Webhooks specification.
func TestVerifyWebhook(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"test": 2432232314}`)
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm9ldHZhbGlk v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	at := time.Unix(1614265330, 0)
	if err := verifyWebhookAt(secret, h, body, at); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	if err := verifyWebhookAt(secret, h, append(body, ' '), at); !errors.Is(err, ErrBadSignature) {
		t.Errorf("changed body: %v, want ErrBadSignature", err)
	}
	if err := verifyWebhookAt(secret, h, body, at.Add(10*time.Minute)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("old timestamp: %v, want ErrBadSignature", err)
	}
	if err := verifyWebhookAt("whsec_"+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", h, body, at); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other secret: %v, want ErrBadSignature", err)
	}
}
