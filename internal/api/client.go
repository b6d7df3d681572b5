package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

// clientAddr is the caller's IP, the key of the login limit: the TCP peer,
// or when the peer is a trusted proxy (server.trustedProxies) the client
// the proxies saw (clientIP).
func (s *Server) clientAddr(r *http.Request) string {
	return clientIP(r, s.deps.Config.Current().Server.TrustedProxies)
}

// clientIP walks X-Forwarded-For from the right, the hop nearest to us,
// while the hops are trusted proxies, and returns the first address that
// is not one: the rightmost untrusted hop. Addresses further left were
// written by the client and are never believed. From an untrusted peer the
// header is ignored. A hop that is not an address (a proxy that wrote
// "unknown") ends the walk at the last trusted one.
func clientIP(r *http.Request, trusted config.Prefixes) string {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !trusted.Contains(peer) {
		return peer.String()
	}
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break
		}
		peer = hop
		if !trusted.Contains(hop) {
			break
		}
	}
	return peer.String()
}

// forwardedFor lists the hops of every X-Forwarded-For header, in order.
func forwardedFor(h http.Header) []string {
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		for hop := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

// parseHop reads "ip", "ip:port", "[ipv6]" or "[ipv6]:port".
func parseHop(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
