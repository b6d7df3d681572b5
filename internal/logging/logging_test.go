package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/logging"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

func TestNewFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := logging.New(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "n", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "kept" || m["n"] != float64(1) {
		t.Errorf("json at warn wrote %q (%v)", buf.String(), err)
	}
	buf.Reset()
	log, _ = logging.New(&buf, "text", "debug")
	log.Debug("hello", "k", "v")
	if !strings.Contains(buf.String(), "level=DEBUG msg=hello k=v") {
		t.Errorf("text at debug wrote %q", buf.String())
	}
	if _, err := logging.New(&buf, "xml", "info"); err == nil {
		t.Error("format xml accepted")
	}
	if _, err := logging.New(&buf, "json", "loud"); err == nil {
		t.Error("level loud accepted")
	}
}

// TestRedaction: secret-named attributes and URL passwords never reach the
// output, in either format.
func TestRedaction(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, _ := logging.New(&buf, format, "info")
		log.Info("x", "token", "eyJhbGciOi.tok.en", "auth_secret", "hunter2-secret", "password", "pw-123",
			"store_url", "redis://:redis-pw@redis:6379/0",
			"err", errors.New(`dial rediss://admin:other-pw@10.0.0.9:6380/1: refused`))
		out := buf.String()
		for _, s := range []string{"eyJhbGciOi.tok.en", "hunter2-secret", "pw-123", "redis-pw", "other-pw"} {
			if strings.Contains(out, s) {
				t.Errorf("%s: %q leaked: %s", format, s, out)
			}
		}
		for _, s := range []string{"redis:6379/0", "10.0.0.9:6380/1", logging.Redacted} {
			if !strings.Contains(out, s) && !strings.Contains(out, strings.ReplaceAll(s, "<", `\u003c`)) {
				t.Errorf("%s: want %q kept: %s", format, s, out)
			}
		}
	}
}

// TestRedisClientLogs: the Redis client's own messages come out through
// the gateway's logger, structured, once it is installed.
func TestRedisClientLogs(t *testing.T) {
	url := redistest.URL(t)
	var buf bytes.Buffer
	log, _ := logging.New(&buf, "json", "info")
	redis.SetLogger(logging.Redis{Log: log})
	rdb, err := redistest.Client(url)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	key := "logging-test:" + t.Name()
	// A sub-millisecond expiry makes the client log that it rounds it up.
	if err := rdb.Set(t.Context(), key, "v", 500*time.Microsecond).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Del(t.Context(), key)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("the client's message is not one JSON line: %v: %q", err, buf.String())
	}
	if m["component"] != "redis" || m["level"] != "WARN" || !strings.Contains(m["detail"].(string), "truncating to 1ms") {
		t.Errorf("client message = %v", m)
	}
}
