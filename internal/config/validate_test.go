package config_test

import (
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

func TestValidateAcceptsValid(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.Auth.Users = []config.User{{Username: "alice", Role: "admin", PasswordHash: testHash(t)}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v, want nil", err)
	}
	c.Limits.MaxPendingPerUser, c.Limits.MaxStoredBytesPerUser = config.NoQuota, config.NoQuota
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() without quotas = %v, want nil", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	hash := testHash(t)
	tests := []struct {
		name       string
		mutate     func(c *config.Config)
		field, msg string
	}{
		{"port out of range", func(c *config.Config) { c.Servers[1].Ports = config.Ports{70000} },
			"servers[1].ports", "port 70000 out of range 1..65535"},
		{"no ports", func(c *config.Config) { c.Servers[0].Ports = nil }, "servers[0].ports", "at least one port"},
		{"port twice", func(c *config.Config) { c.Servers[0].Ports = config.Ports{8001, 8001} }, "servers[0].ports", "listed twice"},
		{"duplicate instance", func(c *config.Config) { c.Servers[1].IP = "127.0.0.1" },
			"servers[1].ports", "instance 127.0.0.1:8001 is already defined by servers[0]"},
		{"duplicate instance, other spelling of the IP", func(c *config.Config) {
			c.Servers[0].IP, c.Servers[1].IP = "::1", "0:0::1"
		}, "servers[1].ports", "already defined by servers[0]"},
		{"duplicate server id", func(c *config.Config) { c.Servers[1].ID = "server-1" }, "servers[1].id", `duplicate id "server-1"`},
		{"empty server id", func(c *config.Config) { c.Servers[1].ID = "" }, "servers[1].id", "1..64 characters"},
		{"bad ip", func(c *config.Config) { c.Servers[0].IP = "http://10.0.0.1" }, "servers[0].ip", "IP address or a host name"},
		{"bad host label", func(c *config.Config) { c.Servers[0].IP = "-gpu.local" }, "servers[0].ip", "IP address or a host name"},
		{"interval too short", func(c *config.Config) { c.HealthCheck.Interval = config.Millis(50e6) }, "healthCheck.interval", "must be at least 100 ms"},
		{"timeout over interval", func(c *config.Config) { c.HealthCheck.Timeout = config.Millis(60e9) }, "healthCheck.timeout", "must not exceed healthCheck.interval"},
		{"failure threshold", func(c *config.Config) { c.HealthCheck.FailureThreshold = -1 }, "healthCheck.failureThreshold", "at least 1"},
		{"store driver", func(c *config.Config) { c.Store.Driver = "postgres" }, "store.driver", `must be "sqlite" or "redis"`},
		{"redis url", func(c *config.Config) { c.Store.Driver, c.Store.URL = "redis", "http://redis:6379" }, "store.url", "redis://"},
		{"listen", func(c *config.Config) { c.Server.Listen = "3000" }, "server.listen", "host:port"},
		{"listen port", func(c *config.Config) { c.Server.Listen = ":99999" }, "server.listen", "out of range"},
		{"metrics listen", func(c *config.Config) { c.Metrics.Listen = "nope" }, "metrics.listen", "host:port"},
		{"public base url", func(c *config.Config) { c.Server.PublicBaseURL = "fleet.example.com" }, "server.publicBaseUrl", "http://"},
		{"max body", func(c *config.Config) { c.Server.MaxBodyBytes = -1 }, "server.maxBodyBytes", "at least 1"},
		{"replica id", func(c *config.Config) { c.Server.ReplicaID = "a b" }, "server.replicaId", "without spaces"},
		{"short secret", func(c *config.Config) { c.Auth.Secret = "short" }, "auth.secret", "at least 32"},
		{"token ttl", func(c *config.Config) { c.Auth.TokenTTL = config.Duration(1e9) }, "auth.tokenTtl", "at least 1m"},
		{"rate limit", func(c *config.Config) { c.Auth.LoginRateLimit = -2 }, "auth.loginRateLimit", "at least 1"},
		{"role", func(c *config.Config) {
			c.Auth.Users = []config.User{{Username: "bob", Role: "root", PasswordHash: hash}}
		}, "auth.users[0].role", `must be "admin" or "user"`},
		{"hash", func(c *config.Config) {
			c.Auth.Users = []config.User{{Username: "bob", Role: "user", PasswordHash: "hunter2"}}
		}, "auth.users[0].passwordHash", "bcrypt"},
		{"duplicate user", func(c *config.Config) {
			c.Auth.Users = []config.User{{"bob", "user", hash}, {"bob", "admin", hash}}
		}, "auth.users[1].username", `duplicate username "bob"`},
		{"empty username", func(c *config.Config) {
			c.Auth.Users = []config.User{{"", "user", hash}}
		}, "auth.users[0].username", "1..64"},
		{"admin password with users", func(c *config.Config) {
			c.Auth.Users = []config.User{{"bob", "admin", hash}}
			c.Auth.AdminPassword = "long-enough"
		}, "auth.adminPassword", "only used when auth.users is empty"},
		{"admin password in demo", func(c *config.Config) { c.Demo, c.Auth.AdminPassword = true, "long-enough" },
			"auth.adminPassword", "demo"},
		{"short admin password", func(c *config.Config) { c.Auth.AdminPassword = "short" }, "auth.adminPassword", "8..72"},
		{"files dir", func(c *config.Config) { c.Files.Dir = "" }, "files.dir", "must not be empty"},
		{"upload size", func(c *config.Config) { c.Files.MaxUploadBytes = -1 }, "files.maxUploadBytes", "at least 1"},
		{"task timeout", func(c *config.Config) { c.Scheduler.TaskTimeout = config.Millis(5e6) }, "scheduler.taskTimeout", "at least 1000 ms"},
		{"attempts", func(c *config.Config) { c.Scheduler.MaxAttempts = -1 }, "scheduler.maxAttempts", "at least 1"},
		{"aging", func(c *config.Config) { c.Scheduler.PriorityAging = -1 }, "scheduler.priorityAging", "at least 1 ms"},
		{"placement", func(c *config.Config) { c.Scheduler.Placement = "random" }, "scheduler.placement", `"warm" or "fifo"`},
		{"warm window", func(c *config.Config) { c.Scheduler.WarmWindow = -1 }, "scheduler.warmWindow", "between 0"},
		{"data dir", func(c *config.Config) { c.DataDir = "" }, "dataDir", "must not be empty"},
		{"max nodes", func(c *config.Config) { c.Limits.MaxNodes = -1 }, "limits.maxNodes", "between 1 and 1000000"},
		{"max nodes too many", func(c *config.Config) { c.Limits.MaxNodes = 1_000_001 }, "limits.maxNodes", "between 1 and 1000000"},
		{"max task bytes", func(c *config.Config) { c.Limits.MaxTaskBytes = 1000 }, "limits.maxTaskBytes", "between 1024 and"},
		{"max pending", func(c *config.Config) { c.Limits.MaxPendingPerUser = -2 }, "limits.maxPendingPerUser", "-1 for no quota"},
		{"max stored bytes", func(c *config.Config) { c.Limits.MaxStoredBytesPerUser = 1<<50 + 1 }, "limits.maxStoredBytesPerUser", "-1 for no quota"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			wantFieldError(t, err, tt.field, tt.msg)
			if n := len(fieldErrors(err)); n != 1 {
				t.Errorf("got %d errors (%v), want 1", n, err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := config.Config{}.Validate()
	for _, field := range []string{"dataDir", "server.listen", "store.driver", "healthCheck.interval", "scheduler.maxAttempts"} {
		wantFieldError(t, err, field, "")
	}
}
