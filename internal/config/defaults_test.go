package config_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/instance"
)

func TestDefault(t *testing.T) {
	t.Parallel()
	want := config.Config{
		Server: config.HTTP{Listen: ":3000", PublicBaseURL: "http://localhost:3000", MaxBodyBytes: 10 << 20,
			ReadHeaderTimeout: config.Duration(10 * time.Second), ReadTimeout: config.Duration(time.Minute),
			WriteTimeout: config.Duration(time.Minute), IdleTimeout: config.Duration(time.Minute),
			TransferTimeout: config.Duration(time.Hour), WSMaxConns: 10000, WSMaxConnsPerUser: 32,
			ShutdownGrace: config.Duration(30 * time.Second)},
		Auth:  config.Auth{TokenTTL: config.Duration(24 * time.Hour), LoginRateLimit: 5},
		Store: config.Store{Driver: "sqlite", Path: "data/comfyfleet.db", Sync: "normal", URL: "redis://127.0.0.1:6379/0", Prefix: "comfyfleet:", LeaseTTL: config.Millis(15 * time.Second)},
		HealthCheck: config.HealthCheck{
			Interval: config.Millis(30 * time.Second), Timeout: config.Millis(5 * time.Second), FailureThreshold: 2,
			DrainAfterFailures: 3, DrainCooldown: config.Millis(5 * time.Minute), ProbeTimeout: config.Millis(time.Minute),
		},
		Files: config.Files{Driver: config.FilesDisk, Dir: "data/files", MaxUploadBytes: 100 << 20, MaxOutputBytes: 4 << 30,
			OutputTimeout: config.Millis(10 * time.Minute),
			S3:            config.S3{Region: "us-east-1", Serve: config.ServeProxy, LinkTTL: config.Duration(15 * time.Minute)}},
		Scheduler: config.Scheduler{TaskTimeout: config.Millis(10 * time.Minute), MaxTaskTimeout: config.Millis(24 * time.Hour), MaxAttempts: 3,
			PriorityAging: config.Millis(time.Minute), Placement: config.PlacementWarm, WarmWindow: config.Millis(30 * time.Second),
			InterruptGrace: config.Millis(30 * time.Second), Prefetch: ptr(1)},
		Limits: config.Limits{MaxNodes: 5000, MaxTaskBytes: 8 << 20, MaxPendingPerUser: 1000, MaxStoredBytesPerUser: 10 << 30},
		Log:    config.Log{Format: "text", Level: "info"},
		Webhooks: config.Webhooks{Timeout: config.Millis(10 * time.Second), RetryFor: config.Duration(24 * time.Hour),
			MinBackoff: config.Millis(5 * time.Second), MaxBackoff: config.Millis(time.Hour), Workers: 16},
		Retention: config.Retention{Interval: config.Millis(time.Minute), Batch: 100},
		DataDir:   "./data",
	}
	if diff := cmp.Diff(want, config.Default()); diff != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", diff)
	}
}

func TestWithDefaultsKeepsValues(t *testing.T) {
	t.Parallel()
	c := config.Config{
		Server:  config.HTTP{Listen: "127.0.0.1:0", PublicBaseURL: "https://cdn.example.com/"},
		Servers: []config.Server{{ID: "a", IP: "1.2.3.4", Ports: config.Ports{1}}, {ID: "b", Name: "B", IP: "1.2.3.4", Ports: config.Ports{2}}},
		DataDir: "/srv",
	}
	servers := c.Servers
	c.WithDefaults()
	got := []string{c.Server.PublicBaseURL, c.Store.Path, c.Servers[0].Name, c.Servers[1].Name, servers[0].Name}
	want := []string{"https://cdn.example.com", "/srv/comfyfleet.db", "a", "B", ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithDefaults mismatch (-want +got):\n%s", diff)
	}
	port0 := config.Config{Server: config.HTTP{Listen: "127.0.0.1:0"}}
	port0.WithDefaults()
	if port0.Server.PublicBaseURL != "" {
		t.Errorf("publicBaseUrl for port 0: got %q, want it left to the app", port0.Server.PublicBaseURL)
	}
}

func TestBaseURLFor(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":3000":           "http://localhost:3000",
		"0.0.0.0:3000":    "http://localhost:3000",
		"[::]:3000":       "http://localhost:3000",
		"127.0.0.1:3000":  "http://127.0.0.1:3000",
		"[::1]:8080":      "http://[::1]:8080",
		"fleet.lan:80":    "http://fleet.lan:80",
		"127.0.0.1:0":     "",
		"127.0.0.1:43567": "http://127.0.0.1:43567",
		"nonsense":        "",
	} {
		if got := config.BaseURLFor(addr); got != want {
			t.Errorf("BaseURLFor(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestInstances(t *testing.T) {
	t.Parallel()
	c := config.Config{Servers: []config.Server{
		{ID: "s1", Name: "主服务器", IP: "127.0.0.1", Ports: config.Ports{8002, 8001}},
		{ID: "s2", Name: "v6", IP: "::1", Ports: config.Ports{9000}},
	}}
	want := []instance.Instance{
		{ID: "127.0.0.1:8002", ServerID: "s1", ServerName: "主服务器", IP: "127.0.0.1", Port: 8002},
		{ID: "127.0.0.1:8001", ServerID: "s1", ServerName: "主服务器", IP: "127.0.0.1", Port: 8001},
		{ID: "[::1]:9000", ServerID: "s2", ServerName: "v6", IP: "::1", Port: 9000},
	}
	if diff := cmp.Diff(want, c.Instances()); diff != "" {
		t.Errorf("Instances() mismatch (-want +got):\n%s", diff)
	}
}

func ptr[T any](v T) *T { return &v }

// TestPrefetchZeroIsKept: prefetch 0 (off) is a value, not "unset".
func TestPrefetchZeroIsKept(t *testing.T) {
	t.Parallel()
	var c config.Config
	if err := c.Set("scheduler.prefetch", "0"); err != nil {
		t.Fatal(err)
	}
	c.WithDefaults()
	if got := *c.Scheduler.Prefetch; got != 0 {
		t.Errorf("prefetch set to 0 became %d after WithDefaults", got)
	}
}
