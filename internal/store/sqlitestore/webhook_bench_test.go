package sqlitestore

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// BenchmarkWebhookEnqueueNoSubs is the outbox's cost on every task event
// of an owner with no webhook: what every gateway pays.
func BenchmarkWebhookEnqueueNoSubs(b *testing.B) {
	s := openFile(b, WithSync(SyncNormal))
	ctx := context.Background()
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		n, err := s.WebhookEnqueue(ctx, &store.WebhookEnqueueParams{EventID: strconv.Itoa(i), Type: "task.completed",
			TaskID: strconv.Itoa(i), Owner: "alice", Payload: []byte(`{}`), Now: now})
		if err != nil || n != 0 {
			b.Fatal(n, err)
		}
	}
}
