package api

import (
	"testing"
	"time"
)

func TestRouteScope(t *testing.T) {
	for _, tt := range []struct{ method, pattern, want string }{
		{"GET", "/api/tasks/{id}", "tasks:read"},
		{"POST", "/api/tasks", "tasks:write"},
		{"DELETE", "/api/files/{id}", "files:write"},
		{"POST", "/api/instances/{id}/refresh-catalog", "instances:write"},
		{"GET", "/metrics", "metrics:read"},
		{"GET", "/api/auth/me", ""},
	} {
		if got := RouteScope(tt.method, tt.pattern); got != tt.want {
			t.Errorf("RouteScope(%s %s) = %q, want %q", tt.method, tt.pattern, got, tt.want)
		}
	}
}

// TestKeyUsesOncePerInterval: a key's use is recorded at most once per
// keyTouchEvery on a replica, and again after a failed write.
func TestKeyUsesOncePerInterval(t *testing.T) {
	var u keyUses
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		id   string
		at   time.Duration
		want bool
	}{
		{"a", 0, true}, {"a", time.Second, false}, {"b", time.Second, true},
		{"a", keyTouchEvery - time.Millisecond, false}, {"a", keyTouchEvery, true},
	}
	for _, s := range steps {
		if got := u.claim(s.id, t0.Add(s.at)); got != s.want {
			t.Errorf("claim(%s, +%v) = %v, want %v", s.id, s.at, got, s.want)
		}
	}
	u.forget("b")
	if !u.claim("b", t0.Add(2*time.Second)) {
		t.Error("claim after forget = false, want a retry")
	}
}
