package api

import (
	"net/http/httptest"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := config.Prefixes{}
	for _, s := range []string{"127.0.0.1", "10.0.0.0/24", "fd00::/8"} {
		p, err := config.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		trusted = append(trusted, p)
	}
	tests := []struct {
		name, peer string
		xff        []string
		trusted    config.Prefixes
		want       string
	}{
		{"no proxies configured: the peer", "203.0.113.9:5000", []string{"198.51.100.1"}, nil, "203.0.113.9"},
		{"untrusted peer: the header is ignored", "203.0.113.9:5000", []string{"198.51.100.1"}, trusted, "203.0.113.9"},
		{"trusted peer, no header", "127.0.0.1:5000", nil, trusted, "127.0.0.1"},
		{"one proxy", "127.0.0.1:5000", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"a client's own entries are not believed", "127.0.0.1:5000", []string{"1.2.3.4, 198.51.100.1"}, trusted, "198.51.100.1"},
		{"two proxies", "127.0.0.1:5000", []string{"198.51.100.1, 10.0.0.7"}, trusted, "198.51.100.1"},
		{"several headers", "127.0.0.1:5000", []string{"9.9.9.9", "198.51.100.1", "10.0.0.7"}, trusted, "198.51.100.1"},
		{"every hop trusted: the leftmost", "127.0.0.1:5000", []string{"10.0.0.8, 10.0.0.7"}, trusted, "10.0.0.8"},
		{"garbage where the client should be: the last trusted hop", "127.0.0.1:5000", []string{"unknown, 10.0.0.7"}, trusted, "10.0.0.7"},
		{"ports and brackets", "[fd00::1]:5000", []string{"[2001:db8::5]:4711"}, trusted, "2001:db8::5"},
		{"IPv4-mapped peer", "[::ffff:127.0.0.1]:5000", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/api/auth/login", nil)
		r.RemoteAddr = tt.peer
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientIP(r, tt.trusted); got != tt.want {
			t.Errorf("%s: clientIP = %q, want %q", tt.name, got, tt.want)
		}
	}
}
