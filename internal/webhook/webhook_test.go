package webhook

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestSignStandardWebhooksVector checks Sign against the example of the
// Standard Webhooks specification.
func TestSignStandardWebhooksVector(t *testing.T) {
	got, err := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if CheckSecret(NewSecret()) != nil || CheckSecret("whsec_short") == nil || CheckSecret("nope") == nil {
		t.Fatal("CheckSecret accepts a bad secret or refuses a new one")
	}
}

func TestPolicyCheck(t *testing.T) {
	refused := []string{"127.0.0.1", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "fe80::1",
		"fd00::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "::ffff:127.0.0.1",
		// IPv6 addresses that reach an IPv4 one: NAT64 to the metadata
		// service, 6to4 and IPv4-compatible loopback.
		"64:ff9b::a9fe:a9fe", "64:ff9b:1::a9fe:a9fe", "2002:a9fe:a9fe::1", "::7f00:1",
		// Special-purpose blocks.
		"192.0.0.1", "198.18.0.1", "240.0.0.1", "255.255.255.255", "100::1", "192.0.2.1", "2001:db8::1"}
	for _, a := range refused {
		if err := (Policy{}).Check(netip.MustParseAddr(a)); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want refused", a, err)
		}
		if err := (Policy{AllowPrivate: true}).Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s with allowPrivate: %v", a, err)
		}
	}
	for _, a := range []string{"1.1.1.1", "2606:4700::1111", "8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"} {
		if err := (Policy{}).Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s: %v, want allowed", a, err)
		}
	}
	p := Policy{Allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	if p.Check(netip.MustParseAddr("10.1.2.3")) != nil || p.Check(netip.MustParseAddr("10.2.0.1")) == nil {
		t.Error("allowed networks not applied")
	}
}

// TestClientRefusesAtDial: the client checks the address it dials after
// name resolution and on every redirect, whatever the URL looked like.
func TestClientRefusesAtDial(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no 127.0.0.2 on this machine: %v", err)
		}
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	target.Listener = ln
	target.Start()
	defer target.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/in", http.StatusFound)
	}))
	defer redirector.Close()

	// A name that resolves to loopback is refused at dial time.
	_, port, _ := net.SplitHostPort(target.Listener.Addr().String())
	c := NewClient(Policy{}, 5*time.Second)
	if _, err := c.Get("http://localhost:" + port + "/"); !errors.Is(err, ErrRefused) {
		t.Errorf("GET via localhost: %v, want refused", err)
	}
	// 127.0.0.1 is allowed; the redirect to 127.0.0.2 is not.
	c = NewClient(Policy{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, 5*time.Second)
	if _, err := c.Get(redirector.URL); !errors.Is(err, ErrRefused) {
		t.Errorf("redirect to 127.0.0.2: %v, want refused", err)
	}
	if hits.Load() != 0 {
		t.Errorf("the refused address was reached %d times", hits.Load())
	}
	// Allowed, the same request goes through.
	c = NewClient(Policy{AllowPrivate: true}, 5*time.Second)
	resp, err := c.Get(redirector.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Errorf("allowed: target reached %d times, want 1", hits.Load())
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	for n, max := range map[int]time.Duration{1: lo, 2: 2 * lo, 3: 4 * lo, 4: 8 * lo, 5: hi, 40: hi} {
		for range 50 {
			if d := Backoff(n, lo, hi); d < max/2 || d > max {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", n, d, max/2, max)
			}
		}
	}
}
