package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Backoff bounds of storeRetry.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

// storeRetry runs op until it succeeds, fails with an error other than
// store.ErrUnavailable, or ctx ends. A run's outcome is known on its
// instance and must not be lost because the store is briefly unreachable
// (a Redis restart): it is written as soon as the store is back.
func storeRetry[T any](ctx context.Context, op func() (T, error)) (T, error) {
	wait := retryMin
	for {
		v, err := op()
		if err == nil || !errors.Is(err, store.ErrUnavailable) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// storeRetryErr is storeRetry for an op with no value.
func storeRetryErr(ctx context.Context, op func() error) error {
	_, err := storeRetry(ctx, func() (struct{}, error) { return struct{}{}, op() })
	return err
}
