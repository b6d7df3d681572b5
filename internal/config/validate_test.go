package config_test

import (
	"net/netip"
	"testing"
	"time"

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
	c.Files.Driver, c.Files.S3.Endpoint, c.Files.S3.Bucket, c.Files.S3.Prefix = config.FilesS3, "https://s3.eu-west-1.amazonaws.com", "gen.outputs-1", "fleet/a_b-c.d/"
	c.Files.S3.Serve = config.ServeRedirect
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() with S3 = %v, want nil", err)
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
		{"interval too long", func(c *config.Config) { c.HealthCheck.Interval = config.Millis(2 * time.Hour) }, "healthCheck.interval", "at most 3600000 ms"},
		{"failure threshold", func(c *config.Config) { c.HealthCheck.FailureThreshold = -1 }, "healthCheck.failureThreshold", "at least 1"},
		{"failure threshold too high", func(c *config.Config) { c.HealthCheck.FailureThreshold = 1000 }, "healthCheck.failureThreshold", "at most 100"},
		{"drain after -2", func(c *config.Config) { c.HealthCheck.DrainAfterFailures = -2 }, "healthCheck.drainAfterFailures", "at least 1"},
		{"drain cooldown short", func(c *config.Config) { c.HealthCheck.DrainCooldown = config.Millis(time.Millisecond) }, "healthCheck.drainCooldown", "at least"},
		{"probe timeout short", func(c *config.Config) { c.HealthCheck.ProbeTimeout = config.Millis(time.Millisecond) }, "healthCheck.probeTimeout", "at least"},
		{"probe workflow in the UI format", func(c *config.Config) { c.HealthCheck.ProbeWorkflow = map[string]any{"nodes": []any{}} }, "healthCheck.probeWorkflow", "UI format"},
		{"probe workflow without nodes", func(c *config.Config) { c.HealthCheck.ProbeWorkflow = map[string]any{} }, "healthCheck.probeWorkflow", "no nodes"},
		{"store driver", func(c *config.Config) { c.Store.Driver = "postgres" }, "store.driver", `must be "sqlite" or "redis"`},
		{"task retention short", func(c *config.Config) { c.Retention.Tasks = config.Duration(time.Minute) }, "retention.tasks", "must be 0 (keep for good) or between 1h and 87600h"},
		{"task retention negative", func(c *config.Config) { c.Retention.Tasks = config.Duration(-time.Hour) }, "retention.tasks", "must be 0"},
		{"file retention long", func(c *config.Config) { c.Retention.Files = config.Duration(100000 * time.Hour) }, "retention.files", "must be 0"},
		{"retention interval", func(c *config.Config) { c.Retention.Interval = config.Millis(time.Millisecond) }, "retention.interval", "at least 1000 ms"},
		{"retention batch", func(c *config.Config) { c.Retention.Batch = 1001 }, "retention.batch", "at most 1000"},
		{"files driver", func(c *config.Config) { c.Files.Driver = "nfs" }, "files.driver", `must be "disk" or "s3"`},
		{"s3 without endpoint", func(c *config.Config) { c.Files.Driver, c.Files.S3.Bucket = "s3", "fleet" }, "files.s3.endpoint", "http:// or https://"},
		{"s3 endpoint with a path", func(c *config.Config) {
			c.Files.Driver, c.Files.S3.Bucket, c.Files.S3.Endpoint = "s3", "fleet", "https://s3.example.com/fleet"
		}, "files.s3.endpoint", "without path"},
		{"s3 endpoint with keys", func(c *config.Config) {
			c.Files.Driver, c.Files.S3.Bucket, c.Files.S3.Endpoint = "s3", "fleet", "https://key:secret@s3.example.com"
		}, "files.s3.endpoint", "credentials"},
		{"s3 without bucket", func(c *config.Config) { c.Files.Driver, c.Files.S3.Endpoint = "s3", "http://127.0.0.1:8333" }, "files.s3.bucket", "S3 bucket name"},
		{"s3 bucket uppercase", func(c *config.Config) {
			c.Files.Driver, c.Files.S3.Endpoint, c.Files.S3.Bucket = "s3", "http://127.0.0.1:8333", "Fleet"
		}, "files.s3.bucket", "S3 bucket name"},
		{"s3 prefix escapes", func(c *config.Config) {
			c.Files.Driver, c.Files.S3.Endpoint, c.Files.S3.Bucket, c.Files.S3.Prefix = "s3", "http://127.0.0.1:8333", "fleet", "a/../b/"
		}, "files.s3.prefix", "at most 512"},
		{"s3 serve", func(c *config.Config) { c.Files.S3.Serve = "cdn" }, "files.s3.serve", `must be "proxy" or "redirect"`},
		{"s3 link ttl", func(c *config.Config) { c.Files.S3.LinkTTL = config.Duration(8 * 24 * time.Hour) }, "files.s3.linkTtl", "at most"},
		{"redis url", func(c *config.Config) { c.Store.Driver, c.Store.URL = "redis", "http://redis:6379" }, "store.url", "redis://"},
		{"listen", func(c *config.Config) { c.Server.Listen = "3000" }, "server.listen", "host:port"},
		{"listen port", func(c *config.Config) { c.Server.Listen = ":99999" }, "server.listen", "out of range"},
		{"pprof without its listener", func(c *config.Config) { c.Metrics.Pprof = true }, "metrics.pprof", "needs metrics.listen"},
		{"metrics listen", func(c *config.Config) { c.Metrics.Listen = "nope" }, "metrics.listen", "host:port"},
		{"public base url", func(c *config.Config) { c.Server.PublicBaseURL = "fleet.example.com" }, "server.publicBaseUrl", "http://"},
		{"max body", func(c *config.Config) { c.Server.MaxBodyBytes = -1 }, "server.maxBodyBytes", "at least 65536"},
		// A body limit of 1 byte would refuse every JSON request (issue 12).
		{"max body below the floor", func(c *config.Config) { c.Server.MaxBodyBytes = 1 }, "server.maxBodyBytes", "at least 65536 bytes"},
		{"max body too large", func(c *config.Config) { c.Server.MaxBodyBytes = 1 << 40 }, "server.maxBodyBytes", "at most 1073741824 bytes"},
		{"read timeout", func(c *config.Config) { c.Server.ReadTimeout = config.Duration(time.Millisecond) }, "server.readTimeout", "at least 1s"},
		{"idle timeout", func(c *config.Config) { c.Server.IdleTimeout = config.Duration(2 * time.Hour) }, "server.idleTimeout", "at most 1h"},
		{"write timeout", func(c *config.Config) { c.Server.WriteTimeout = -1 }, "server.writeTimeout", "at least 1s"},
		{"header timeout", func(c *config.Config) { c.Server.ReadHeaderTimeout = config.Duration(time.Hour) }, "server.readHeaderTimeout", "at most 5m"},
		{"transfer timeout", func(c *config.Config) { c.Server.TransferTimeout = config.Duration(time.Second) }, "server.transferTimeout", "at least 1m"},
		{"shutdown grace short", func(c *config.Config) { c.Server.ShutdownGrace = config.Duration(time.Millisecond) }, "server.shutdownGrace", "at least 1s"},
		{"shutdown grace long", func(c *config.Config) { c.Server.ShutdownGrace = config.Duration(25 * time.Hour) }, "server.shutdownGrace", "at most 24h"},
		{"ws conns", func(c *config.Config) { c.Server.WSMaxConns = -1 }, "server.wsMaxConns", "at least 1"},
		{"ws conns per user over the total", func(c *config.Config) { c.Server.WSMaxConns, c.Server.WSMaxConnsPerUser = 10, 11 },
			"server.wsMaxConnsPerUser", "at most 10 (server.wsMaxConns)"},
		{"every address trusted", func(c *config.Config) {
			c.Server.TrustedProxies = config.Prefixes{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/0")}
		}, "server.trustedProxies", "trusts every address"},
		{"replica id", func(c *config.Config) { c.Server.ReplicaID = "a b" }, "server.replicaId", "without spaces"},
		{"short secret", func(c *config.Config) { c.Auth.Secret = "short" }, "auth.secret", "at least 32"},
		{"placeholder secret", func(c *config.Config) {
			c.Auth.Secret = "replace-with-64-hex-characters-from-openssl-rand-hex-32-xxxxxxxx"
		}, "auth.secret", "placeholder"},
		{"token ttl", func(c *config.Config) { c.Auth.TokenTTL = config.Duration(1e9) }, "auth.tokenTtl", "at least 1m"},
		{"token ttl too long", func(c *config.Config) { c.Auth.TokenTTL = config.Duration(400 * 24 * time.Hour) }, "auth.tokenTtl", "at most 8760h"},
		{"rate limit", func(c *config.Config) { c.Auth.LoginRateLimit = -2 }, "auth.loginRateLimit", "at least 1"},
		{"rate limit too high", func(c *config.Config) { c.Auth.LoginRateLimit = 1e6 }, "auth.loginRateLimit", "at most 10000"},
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
		{"upload size too large", func(c *config.Config) { c.Files.MaxUploadBytes = 1 << 41 }, "files.maxUploadBytes", "at most"},
		{"output size", func(c *config.Config) { c.Files.MaxOutputBytes = -1 }, "files.maxOutputBytes", "at least 1 bytes"},
		{"output size too large", func(c *config.Config) { c.Files.MaxOutputBytes = 1 << 41 }, "files.maxOutputBytes", "at most 1099511627776 bytes"},
		{"output timeout", func(c *config.Config) { c.Files.OutputTimeout = config.Millis(time.Millisecond) }, "files.outputTimeout", "at least 1000 ms"},
		{"output timeout too long", func(c *config.Config) { c.Files.OutputTimeout = config.Millis(25 * time.Hour) }, "files.outputTimeout", "at most 86400000 ms"},
		{"lease ttl", func(c *config.Config) { c.Store.LeaseTTL = config.Millis(time.Second) }, "store.leaseTtl", "at least 3000 ms"},
		{"lease ttl too long", func(c *config.Config) { c.Store.LeaseTTL = config.Millis(6 * time.Minute) }, "store.leaseTtl", "at most 300000 ms"},
		{"task timeout", func(c *config.Config) { c.Scheduler.TaskTimeout = config.Millis(5e6) }, "scheduler.taskTimeout", "at least 1000 ms"},
		{"task timeout over the maximum", func(c *config.Config) { c.Scheduler.TaskTimeout = config.Millis(25 * time.Hour) },
			"scheduler.taskTimeout", "must not exceed scheduler.maxTaskTimeout (86400000 ms)"},
		{"max task timeout", func(c *config.Config) { c.Scheduler.MaxTaskTimeout = config.Millis(31 * 24 * time.Hour) },
			"scheduler.maxTaskTimeout", "at most 2592000000 ms"},
		{"attempts", func(c *config.Config) { c.Scheduler.MaxAttempts = -1 }, "scheduler.maxAttempts", "at least 1"},
		{"attempts too many", func(c *config.Config) { c.Scheduler.MaxAttempts = 1000 }, "scheduler.maxAttempts", "at most 100"},
		{"aging", func(c *config.Config) { c.Scheduler.PriorityAging = -1 }, "scheduler.priorityAging", "at least 1 ms"},
		{"placement", func(c *config.Config) { c.Scheduler.Placement = "random" }, "scheduler.placement", `"warm" or "fifo"`},
		{"warm window", func(c *config.Config) { c.Scheduler.WarmWindow = -1 }, "scheduler.warmWindow", "at least 0 ms"},
		{"warm window too long", func(c *config.Config) { c.Scheduler.WarmWindow = config.Millis(48 * time.Hour) }, "scheduler.warmWindow", "at most 86400000 ms"},
		{"interrupt grace", func(c *config.Config) { c.Scheduler.InterruptGrace = config.Millis(time.Millisecond) }, "scheduler.interruptGrace", "at least 1000 ms"},
		{"interrupt grace too long", func(c *config.Config) { c.Scheduler.InterruptGrace = config.Millis(2 * time.Hour) }, "scheduler.interruptGrace", "at most 3600000 ms"},
		{"prefetch", func(c *config.Config) { n := -1; c.Scheduler.Prefetch = &n }, "scheduler.prefetch", "at least 0"},
		{"prefetch too deep", func(c *config.Config) { n := 9; c.Scheduler.Prefetch = &n }, "scheduler.prefetch", "at most 8"},
		{"too many instances", func(c *config.Config) {
			c.Servers = append(c.Servers, config.Server{ID: "big", IP: "10.0.0.1", Ports: portRange(1, 1022)})
		}, "servers", "1025 instances (ports) in all; at most 1024"},
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

// portRange lists the ports lo..hi.
func portRange(lo, hi int) config.Ports {
	var p config.Ports
	for n := lo; n <= hi; n++ {
		p = append(p, n)
	}
	return p
}

// TestValidateAtTheLimits: the bounds themselves are accepted, so is 1024
// instances in all.
func TestValidateAtTheLimits(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.Server.MaxBodyBytes = config.MinBodyBytes
	c.Servers = append(c.Servers, config.Server{ID: "big", Name: "big", IP: "10.0.0.1", Ports: portRange(1, 1021)})
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
}

func TestSecretSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value, env string
		secret          bool
	}{
		{"auth.secret", "0123456789abcdef0123456789abcdef", "COMFYFLEET_AUTH_SECRET", true},
		{"AUTH.SECRET", "x", "COMFYFLEET_AUTH_SECRET", true},
		{"auth.adminPassword", "long-enough", "COMFYFLEET_ADMIN_PASSWORD", true},
		{"store.url", "redis://:hunter2@redis:6379/0", "COMFYFLEET_STORE_URL", true},
		{"store.url", "redis://redis:6379/0", "COMFYFLEET_STORE_URL", false},
		{"server.listen", ":3000", "", false},
	}
	for _, tt := range tests {
		env, secret := config.SecretSetting(tt.key, tt.value)
		if secret != tt.secret || (secret && env != tt.env) {
			t.Errorf("SecretSetting(%q, %q) = %q, %v; want %q, %v", tt.key, tt.value, env, secret, tt.env, tt.secret)
		}
	}
}
