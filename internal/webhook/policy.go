package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused says an outbound address is not allowed.
var ErrRefused = errors.New("address not allowed")

// Policy says which addresses webhook requests may reach. By default every
// public address, and no private (RFC 1918, fc00::/7), loopback,
// link-local, shared (100.64.0.0/10), unspecified or multicast one.
type Policy struct {
	// AllowPrivate allows every address.
	AllowPrivate bool
	// Allowed are networks allowed although they are not public.
	Allowed []netip.Prefix
}

// special are the IANA special-purpose blocks that are not public,
// besides those netip's predicates already name.
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

// Prefixes of IPv6 addresses that carry an IPv4 address, which is what a
// connection to them may reach: NAT64 (RFC 6052), 6to4 (RFC 3056) and
// IPv4-compatible addresses.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64Loc  = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour = netip.MustParsePrefix("2002::/16")
	v4Compat  = netip.MustParsePrefix("::/96")
)

// embeddedV4 returns the IPv4 address an IPv6 address carries, if any.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a), nat64Loc.Contains(a), v4Compat.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// Check returns ErrRefused (wrapped, naming the address) when addr may not be reached.
func (p Policy) Check(addr netip.Addr) error {
	addr = addr.Unmap()
	if p.AllowPrivate {
		return nil
	}
	for _, n := range p.Allowed {
		if n.Contains(addr) {
			return nil
		}
	}
	if !public(addr) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, addr)
	}
	return nil
}

// public reports whether addr, and the IPv4 address it carries if it
// carries one, is a public unicast address.
func public(addr netip.Addr) bool {
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() ||
		addr.IsUnspecified() {
		return false
	}
	for _, n := range special {
		if n.Contains(addr) {
			return false
		}
	}
	if v4, ok := embeddedV4(addr); ok {
		return public(v4)
	}
	return true
}

// control checks the address a connection is about to dial, after name
// resolution: every connection of the client goes through it, those of
// redirects included.
func (p Policy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefused, address)
	}
	return p.Check(ap.Addr())
}

// CheckURL checks a webhook URL when it is registered: http or https, a
// host, no user info, and when the host is an address or resolves (within
// a few seconds), only allowed addresses. The dial checks again each time.
func (p Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an http or https URL")
	case u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not carry user info")
	case len(raw) > 2048:
		return errors.New("is longer than 2048 characters")
	}
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		return p.Check(addr)
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return p.Check(netip.MustParseAddr("127.0.0.1"))
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil // it may resolve later; the dial checks
	}
	for _, a := range addrs {
		if err := p.Check(a); err != nil {
			return err
		}
	}
	return nil
}
