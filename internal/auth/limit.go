package auth

import (
	"net"
	"sync"
	"time"
)

const (
	// limitWindow is the window of LoginRateLimit.
	limitWindow = time.Minute
	// limitMaxKeys bounds the address/username pairs remembered.
	limitMaxKeys = 10000
	// limitMaxUsername bounds the part of a username in a key; longer
	// names cannot exist.
	limitMaxUsername = 65
)

// limiter counts failed logins per key in a sliding window: at most limit
// in any window. An attempt is counted as a failure when it starts (so
// concurrent attempts cannot exceed the limit) and forgotten if it succeeds.
type limiter struct {
	limit   int
	maxKeys int

	// mu guards failures.
	mu sync.Mutex
	// failures holds, per key, the start times of failed attempts within
	// the window, oldest first.
	failures map[string][]time.Time
}

func newLimiter(limit int) *limiter {
	return &limiter{limit: limit, maxKeys: limitMaxKeys, failures: map[string][]time.Time{}}
}

// limitKey is the limiter key of a client address (its port dropped) and a
// username.
func limitKey(remoteAddr, username string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		remoteAddr = host
	}
	if len(username) > limitMaxUsername {
		username = username[:limitMaxUsername]
	}
	return remoteAddr + "\x00" + username
}

// take counts an attempt for key at now, or, when key has used up its
// failures, reports how long until it may try again.
func (l *limiter) take(key string, now time.Time) (retryAfter time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.recent(key, now)
	if len(recent) >= l.limit {
		return recent[0].Add(limitWindow).Sub(now), false
	}
	if _, known := l.failures[key]; !known && len(l.failures) >= l.maxKeys {
		l.evict(now)
	}
	l.failures[key] = append(recent, now)
	return 0, true
}

// forget drops the failures of key.
func (l *limiter) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

// recent returns the failures of key still in the window at now.
func (l *limiter) recent(key string, now time.Time) []time.Time {
	list := l.failures[key]
	start := now.Add(-limitWindow)
	for len(list) > 0 && !list[0].After(start) {
		list = list[1:]
	}
	return list
}

// evict makes room for a key: it drops every key whose failures have all
// left the window and, if that frees nothing, the key whose last failure
// is the oldest.
func (l *limiter) evict(now time.Time) {
	start := now.Add(-limitWindow)
	var oldestKey string
	var oldest time.Time
	for k, list := range l.failures {
		last := list[len(list)-1]
		if !last.After(start) {
			delete(l.failures, k)
			continue
		}
		if oldestKey == "" || last.Before(oldest) {
			oldestKey, oldest = k, last
		}
	}
	if len(l.failures) >= l.maxKeys {
		delete(l.failures, oldestKey) // keys are never "": they hold a NUL
	}
}
