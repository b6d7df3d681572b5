package config

import (
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/instance"
)

// Default returns the configuration with every documented default, as if
// from an empty file: no servers, and paths under "./data".
func Default() Config {
	var c Config
	c.WithDefaults()
	return c
}

// WithDefaults fills every zero field with its default. Paths are derived
// from DataDir (Store.Path "<dataDir>/comfyfleet.db", Files.Dir
// "<dataDir>/files"), Server.PublicBaseURL from Server.Listen (see
// BaseURLFor; it stays empty for a port-0 listener, and the app fills it
// with BaseURLFor of the bound address), and a server's Name from its ID.
// A trailing "/" of Server.PublicBaseURL is dropped.
func (c *Config) WithDefaults() {
	orDefault(&c.DataDir, "./data")
	c.Server.withDefaults()
	c.Auth.withDefaults()
	c.Store.withDefaults(c.DataDir)
	c.HealthCheck.withDefaults()
	c.Files.withDefaults(c.DataDir)
	c.Scheduler.withDefaults()
	c.Limits.withDefaults()
	orDefault(&c.Log.Format, LogText)
	orDefault(&c.Log.Level, "info")
	c.Webhooks.withDefaults()
	orDefault(&c.Retention.Interval, Millis(time.Minute))
	orDefault(&c.Retention.Batch, 100)
	if slices.ContainsFunc(c.Servers, func(s Server) bool { return s.Name == "" }) {
		c.Servers = slices.Clone(c.Servers)
		for i := range c.Servers {
			orDefault(&c.Servers[i].Name, c.Servers[i].ID)
		}
	}
}

func (h *HTTP) withDefaults() {
	orDefault(&h.Listen, ":3000")
	orDefault(&h.MaxBodyBytes, 10<<20)
	orDefault(&h.ReadHeaderTimeout, Duration(10*time.Second))
	orDefault(&h.ReadTimeout, Duration(time.Minute))
	orDefault(&h.WriteTimeout, Duration(time.Minute))
	orDefault(&h.IdleTimeout, Duration(time.Minute))
	orDefault(&h.TransferTimeout, Duration(time.Hour))
	orDefault(&h.ShutdownGrace, Duration(30*time.Second))
	orDefault(&h.WSMaxConns, 10000)
	orDefault(&h.WSMaxConnsPerUser, 32)
	orDefault(&h.PublicBaseURL, BaseURLFor(h.Listen))
	h.PublicBaseURL = strings.TrimRight(h.PublicBaseURL, "/")
}

func (a *Auth) withDefaults() {
	orDefault(&a.TokenTTL, Duration(24*time.Hour))
	orDefault(&a.LoginRateLimit, 5)
}

func (s *Store) withDefaults(dataDir string) {
	orDefault(&s.Driver, "sqlite")
	orDefault(&s.Sync, "normal")
	orDefault(&s.Path, filepath.Join(dataDir, "comfyfleet.db"))
	orDefault(&s.URL, "redis://127.0.0.1:6379/0")
	orDefault(&s.Prefix, "comfyfleet:")
	orDefault(&s.LeaseTTL, Millis(15*time.Second))
}

func (w *Webhooks) withDefaults() {
	orDefault(&w.Timeout, Millis(10*time.Second))
	orDefault(&w.RetryFor, Duration(24*time.Hour))
	orDefault(&w.MinBackoff, Millis(5*time.Second))
	orDefault(&w.MaxBackoff, Millis(time.Hour))
	orDefault(&w.Workers, 16)
}

func (h *HealthCheck) withDefaults() {
	orDefault(&h.Interval, Millis(30*time.Second))
	orDefault(&h.Timeout, Millis(5*time.Second))
	orDefault(&h.FailureThreshold, 2)
	orDefault(&h.DrainAfterFailures, 3)
	orDefault(&h.DrainCooldown, Millis(5*time.Minute))
	orDefault(&h.ProbeTimeout, Millis(time.Minute))
}

func (f *Files) withDefaults(dataDir string) {
	orDefault(&f.Driver, FilesDisk)
	orDefault(&f.Dir, filepath.Join(dataDir, "files"))
	orDefault(&f.S3.Region, "us-east-1")
	orDefault(&f.S3.Serve, ServeProxy)
	orDefault(&f.S3.LinkTTL, Duration(15*time.Minute))
	orDefault(&f.MaxUploadBytes, 100<<20)
	orDefault(&f.MaxOutputBytes, 4<<30)
	orDefault(&f.OutputTimeout, Millis(10*time.Minute))
}

func (s *Scheduler) withDefaults() {
	orDefault(&s.TaskTimeout, Millis(10*time.Minute))
	orDefault(&s.MaxTaskTimeout, Millis(24*time.Hour))
	orDefault(&s.MaxAttempts, 3)
	orDefault(&s.PriorityAging, Millis(time.Minute))
	orDefault(&s.Placement, PlacementWarm)
	orDefault(&s.WarmWindow, Millis(30*time.Second))
	orDefault(&s.InterruptGrace, Millis(30*time.Second))
	if s.Prefetch == nil {
		one := 1
		s.Prefetch = &one
	}
}

// orDefault sets *v to def when *v is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// BaseURLFor is the public base URL of a gateway listening on addr:
// ":3000" and "0.0.0.0:3000" give "http://localhost:3000",
// "127.0.0.1:3000" gives "http://127.0.0.1:3000". It returns "" when the
// port is 0 or addr is not host:port; the app then calls it again with the
// listener's bound address.
func BaseURLFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return ""
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Instances expands the servers into their instances, servers × ports, in
// config order.
func (c Config) Instances() []instance.Instance {
	var out []instance.Instance
	for _, s := range c.Servers {
		for _, p := range s.Ports {
			out = append(out, instance.Instance{
				ID: instance.ID(s.IP, p), ServerID: s.ID, ServerName: s.Name, IP: s.IP, Port: p,
				Labels:    s.Labels.clone(),
				OutputDir: strings.ReplaceAll(s.OutputDir, "{port}", strconv.Itoa(p)),
			})
		}
	}
	return out
}

// clone returns a copy of c that shares no slice with it.
func (c Config) clone() Config {
	c.Servers = slices.Clone(c.Servers)
	for i := range c.Servers {
		c.Servers[i].Ports = slices.Clone(c.Servers[i].Ports)
		c.Servers[i].Labels = c.Servers[i].Labels.clone()
	}
	c.Auth.Users = slices.Clone(c.Auth.Users)
	c.Server.TrustedProxies = slices.Clone(c.Server.TrustedProxies)
	c.RuntimeKeys = slices.Clone(c.RuntimeKeys)
	return c
}
