package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"
)

// runHealthcheck is "comfyfleet healthcheck": GET /livez (or /readyz with
// --ready) of the gateway that the same config describes, on loopback,
// and exit 0 only on a 200. It is the container image's HEALTHCHECK, which
// has no shell and no curl.
func runHealthcheck(ctx context.Context, args []string) error {
	var url string
	var ready bool
	var timeout time.Duration
	cfg, err := loadConfigWith("healthcheck", args, func(fs *flag.FlagSet) {
		fs.StringVar(&url, "url", "", "the probe's URL (default: /livez on server.listen, on loopback)")
		fs.BoolVar(&ready, "ready", false, "probe /readyz (store reachable, not draining) instead of /livez")
		fs.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	})
	if err != nil {
		return err
	}
	if url == "" {
		path := "/livez"
		if ready {
			path = "/readyz"
		}
		url = "http://" + loopbackAddr(cfg.Server.Listen) + path
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s", url, resp.Status)
	}
	return nil
}

// loopbackAddr is where a local probe reaches a listen address: its port
// on 127.0.0.1 when it listens on every interface (":3000",
// "0.0.0.0:3000", "[::]:3000"), else the address itself.
func loopbackAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
