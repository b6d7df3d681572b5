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

var (
	sharedNet = netip.MustParsePrefix("100.64.0.0/10")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
)

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
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() ||
		addr.IsUnspecified() || sharedNet.Contains(addr) || thisNet.Contains(addr) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, addr)
	}
	return nil
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
