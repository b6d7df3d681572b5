// Package redistest holds the house rule for tests against a real Redis, so
// every package that needs one follows it the same way:
//
//   - TEST_REDIS_URL names the server, e.g. redis://127.0.0.1:6379/0.
//   - Unset on a laptop: the test is skipped with a message saying how to
//     run it. Unset while CI is set: the test fails, so CI can never pass by
//     skipping.
//   - Set but unreachable: the test fails.
//   - Each test works under its own key prefix, whose keys are deleted at
//     cleanup, so tests run in parallel and never FLUSHDB.
//
// Production code never imports this package.
package redistest

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// EnvURL is the environment variable naming the test server.
const EnvURL = "TEST_REDIS_URL"

// reachable remembers, per URL, whether the server answered a PING.
var reachable sync.Map // url -> error (nil when it answered)

// URL returns the test server's URL, applying the house rule: it skips the
// test when TEST_REDIS_URL is unset (fails it when CI is set) and fails it
// when the server does not answer.
func URL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s is not set but CI is: Redis tests must run in CI, not skip. "+
				"Start a Redis and set %s=redis://127.0.0.1:6379/0", EnvURL, EnvURL)
		}
		tb.Skipf("Redis tests skipped: start a Redis and run them with "+
			"%s=redis://127.0.0.1:6379/0 go test ./internal/store/redisstore/...", EnvURL)
	}
	if err := ping(url); err != nil {
		tb.Fatalf("%s=%s is set but the server does not answer: %v", EnvURL, url, err)
	}
	return url
}

// ping checks the server once per URL and process.
func ping(url string) error {
	if err, ok := reachable.Load(url); ok {
		return asError(err)
	}
	rdb, err := Client(url)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = rdb.Ping(ctx).Err()
		cancel()
		rdb.Close()
	}
	reachable.Store(url, err)
	return err
}

func asError(v any) error {
	err, _ := v.(error)
	return err
}

// Client opens a client on url; the caller closes it.
func Client(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}

// Prefix returns a key prefix of the test's own, "test:<uuid>:", and
// deletes every key under it at the test's cleanup.
func Prefix(tb testing.TB, url string) string {
	tb.Helper()
	prefix := "test:" + uuid.NewString() + ":"
	tb.Cleanup(func() {
		rdb, err := Client(url)
		if err != nil {
			tb.Errorf("redistest: clean up %s: %v", prefix, err)
			return
		}
		defer rdb.Close()
		if err := DeletePrefix(context.Background(), rdb, prefix); err != nil {
			tb.Errorf("redistest: clean up %s: %v", prefix, err)
		}
	})
	return prefix
}

// Keys lists every key under prefix (SCAN, never KEYS).
func Keys(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]string, error) {
	var out []string
	iter := rdb.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	return out, iter.Err()
}

// DeletePrefix deletes every key under prefix, a batch of UNLINKs per SCAN page.
func DeletePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	var cursor uint64
	for {
		batch, next, err := rdb.Scan(ctx, cursor, escapeGlob(prefix)+"*", 1000).Result()
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// escapeGlob quotes the characters SCAN MATCH treats as a pattern.
func escapeGlob(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}
