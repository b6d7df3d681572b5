package apikey

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNewParseMatch(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k, token, err := New("alice", "ci", []string{"tasks:read"}, now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !IsKey(token) || strings.Contains(k.Hash, token[len(Prefix)+25:]) {
		t.Fatalf("token %q, hash %q", token, k.Hash)
	}
	id, secret, err := Parse(token)
	if err != nil || id != k.ID {
		t.Fatalf("Parse(%q) = %q, %v; want id %q", token, id, err, k.ID)
	}
	if !k.Matches(secret) || k.Matches(secret[:len(secret)-1]+"x") {
		t.Error("Matches: the key's own secret must match and another must not")
	}
	_, again, _ := New("alice", "ci", nil, now, time.Time{})
	if again == token {
		t.Error("two keys with the same token")
	}
	for _, bad := range []string{"", "cfk_", "cfk_" + k.ID, "eyJhbGciOi.x.y", strings.ToUpper(token[:28]) + token[28:], token + "x", "cfk_zz" + token[6:]} {
		if _, _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestActive(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		k    Key
		want bool
	}{
		{"no expiry", Key{}, true},
		{"expires later", Key{ExpiresAt: now.Add(time.Millisecond)}, true},
		{"expires now", Key{ExpiresAt: now}, false},
		{"revoked", Key{RevokedAt: now.Add(-time.Hour)}, false},
	} {
		if got := tt.k.Active(now); got != tt.want {
			t.Errorf("%s: Active = %v, want %v", tt.name, got, tt.want)
		}
	}
}
