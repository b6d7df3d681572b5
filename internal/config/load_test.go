package config_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	const file = `
server:
  listen: ":8080"
servers:
  - id: s1
    ip: 10.0.0.5
    ports: "8001-8003"
healthCheck:
  interval: 10000
  timeout: 2s
auth:
  tokenTtl: 12h
`
	tests := []struct {
		name  string
		file  string
		env   []string
		check func(t *testing.T, c config.Config)
	}{
		{
			name: "file",
			file: file,
			check: func(t *testing.T, c config.Config) {
				want := config.Config{
					Server:      config.HTTP{Listen: ":8080"},
					Auth:        config.Auth{TokenTTL: config.Duration(12 * time.Hour)},
					Servers:     []config.Server{{ID: "s1", IP: "10.0.0.5", Ports: config.Ports{8001, 8002, 8003}}},
					HealthCheck: config.HealthCheck{Interval: config.Millis(10 * time.Second), Timeout: config.Millis(2 * time.Second)},
				}
				if diff := cmp.Diff(want, c); diff != "" {
					t.Errorf("Load() mismatch (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "env overrides file",
			file: file,
			env: []string{
				"PATH=/bin",
				"COMFYFLEET_SERVER_LISTEN=127.0.0.1:9000",
				"COMFYFLEET_SERVER_PUBLIC_BASE_URL=https://fleet.example.com",
				"COMFYFLEET_HEALTH_CHECK_INTERVAL=20000",
				"COMFYFLEET_HEALTH_CHECK_FAILURE_THRESHOLD=4",
				"COMFYFLEET_STORE_DRIVER=redis",
				"COMFYFLEET_STORE_URL=redis://:pw@redis:6379/1",
				"COMFYFLEET_DATA_DIR=/var/lib/comfyfleet",
				"COMFYFLEET_AUTH_SECRET=0123456789abcdef0123456789abcdef",
				"COMFYFLEET_AUTH_TOKEN_TTL=1h",
				"COMFYFLEET_ADMIN_PASSWORD=correct horse",
				"COMFYFLEET_DEMO=false",
				"COMFYFLEET_CONFIG=/etc/comfyfleet.yaml",
				"COMFYFLEET_LOG_LEVEL=debug",
			},
			check: func(t *testing.T, c config.Config) {
				got := []any{c.Server.Listen, c.Server.PublicBaseURL, c.HealthCheck.Interval, c.HealthCheck.FailureThreshold,
					c.HealthCheck.Timeout, c.Store.Driver, c.Store.URL, c.DataDir, c.Auth.Secret, c.Auth.TokenTTL, c.Auth.AdminPassword}
				want := []any{"127.0.0.1:9000", "https://fleet.example.com", config.Millis(20 * time.Second), 4,
					config.Millis(2 * time.Second), "redis", "redis://:pw@redis:6379/1", "/var/lib/comfyfleet",
					"0123456789abcdef0123456789abcdef", config.Duration(time.Hour), "correct horse"}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Load() mismatch (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "empty env value is ignored",
			file: file,
			env:  []string{"COMFYFLEET_SERVER_LISTEN="},
			check: func(t *testing.T, c config.Config) {
				if c.Server.Listen != ":8080" {
					t.Errorf("listen: got %q, want %q", c.Server.Listen, ":8080")
				}
			},
		},
		{
			name: "no file",
			env:  []string{"COMFYFLEET_DEMO=true", "COMFYFLEET_AUTH_ADMIN_PASSWORD=long-enough"},
			check: func(t *testing.T, c config.Config) {
				if !c.Demo || c.Auth.AdminPassword != "long-enough" {
					t.Errorf("got demo %v, admin password %q; want true, %q", c.Demo, c.Auth.AdminPassword, "long-enough")
				}
			},
		},
		{
			name: "empty file",
			file: "# nothing\n",
			check: func(t *testing.T, c config.Config) {
				if diff := cmp.Diff(config.Config{}, c); diff != "" {
					t.Errorf("Load() mismatch (-want +got):\n%s", diff)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			c, err := config.Load(path, tt.env)
			if err != nil {
				t.Fatalf("Load() error: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		file       string
		env        []string
		field, msg string
	}{
		{name: "unknown top-level key", file: "listen: ':3000'\n", field: "listen", msg: "unknown field"},
		{name: "unknown nested key", file: "server:\n  listn: ':3000'\n", field: "server.listn", msg: "unknown field"},
		{name: "unknown key in a server", file: "servers:\n  - id: a\n    ip: 1.2.3.4\n    port: 8001\n", field: "servers[0].port", msg: "unknown field"},
		{name: "demo is not a file key", file: "demo: true\n", field: "demo", msg: "unknown field"},
		{name: "bad millis", file: "healthCheck:\n  interval: soon\n", field: "healthCheck.interval", msg: "invalid duration"},
		{name: "bad duration", file: "auth:\n  tokenTtl: 3600\n", field: "auth.tokenTtl", msg: "duration string"},
		{name: "bad port range", file: "servers:\n  - id: a\n    ip: 1.2.3.4\n    ports: 8008-8001\n", field: "servers[0].ports", msg: "reversed"},
		{name: "string for an integer", file: "auth:\n  loginRateLimit: many\n", field: "auth.loginRateLimit", msg: "whole number"},
		{name: "list for a string", file: "dataDir: [a, b]\n", field: "dataDir", msg: "must be a string"},
		{name: "section not a mapping", file: "server: 3000\n", field: "server", msg: "mapping"},
		{name: "bad env value", env: []string{"COMFYFLEET_AUTH_LOGIN_RATE_LIMIT=five"}, field: "auth.loginRateLimit", msg: "whole number"},
		{name: "bad env bool", env: []string{"COMFYFLEET_DEMO=yes please"}, field: "demo", msg: "true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			_, err := config.Load(path, tt.env)
			wantFieldError(t, err, tt.field, tt.msg)
		})
	}
}

func TestLoadUnknownEnv(t *testing.T) {
	t.Parallel()
	_, err := config.Load("", []string{"COMFYFLEET_SERVER_LISTN=:1"})
	if err == nil || !strings.Contains(err.Error(), "COMFYFLEET_SERVER_LISTN: unknown setting") {
		t.Fatalf("got %v, want an error naming COMFYFLEET_SERVER_LISTN", err)
	}
}

// TestLoadIgnoresCLIEnv: the client commands' variables are no settings,
// and a shell that has them set still starts the gateway.
func TestLoadIgnoresCLIEnv(t *testing.T) {
	t.Parallel()
	if _, err := config.Load("", []string{"COMFYFLEET_URL=http://x", "COMFYFLEET_API_KEY=cfk_x", "COMFYFLEET_CLI_CONFIG=/x"}); err != nil {
		t.Fatalf("Load with the CLI's variables: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	if _, err := config.Load(t.TempDir()+"/nope.yaml", nil); err == nil {
		t.Fatal("got no error for a missing file")
	}
}

func TestFlagsAfterLoadMoveDerivedDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(writeFile(t, "server:\n  listen: ':8080'\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"dataDir": "/srv/fleet", "Server.Listen": "127.0.0.1:9090"} {
		if err := c.Set(k, v); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
	}
	c.WithDefaults()
	got := []string{c.Store.Path, c.Files.Dir, c.Server.PublicBaseURL}
	want := []string{"/srv/fleet/comfyfleet.db", "/srv/fleet/files", "http://127.0.0.1:9090"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("derived defaults mismatch (-want +got):\n%s", diff)
	}
}

func TestSet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value string
		get        func(c config.Config) any
		want       any
	}{
		{"server.listen", ":4000", func(c config.Config) any { return c.Server.Listen }, ":4000"},
		{"server.maxBodyBytes", "2048", func(c config.Config) any { return c.Server.MaxBodyBytes }, int64(2048)},
		{"healthCheck.interval", "15000", func(c config.Config) any { return c.HealthCheck.Interval }, config.Millis(15 * time.Second)},
		{"healthCheck.timeout", "1.5s", func(c config.Config) any { return c.HealthCheck.Timeout }, config.Millis(1500 * time.Millisecond)},
		{"auth.tokenTtl", "90m", func(c config.Config) any { return c.Auth.TokenTTL }, config.Duration(90 * time.Minute)},
		{"demo", "true", func(c config.Config) any { return c.Demo }, true},
		{"HEALTHCHECK.FAILURETHRESHOLD", "3", func(c config.Config) any { return c.HealthCheck.FailureThreshold }, 3},
		{"server.trustedProxies", "10.0.0.0/8, 127.0.0.1", func(c config.Config) any {
			return c.Server.TrustedProxies.Contains(netip.MustParseAddr("10.2.3.4")) && c.Server.TrustedProxies.Contains(netip.MustParseAddr("127.0.0.1"))
		}, true},
	}
	for _, tt := range tests {
		var c config.Config
		if err := c.Set(tt.key, tt.value); err != nil {
			t.Errorf("Set(%q, %q): %v", tt.key, tt.value, err)
			continue
		}
		if got := tt.get(c); got != tt.want {
			t.Errorf("Set(%q, %q): got %v, want %v", tt.key, tt.value, got, tt.want)
		}
	}
}

func TestSetErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, value, msg string }{
		{"server.nope", "x", "unknown setting"},
		{"servers", "x", "unknown setting"},
		{"server", "x", "unknown setting"},
		{"runtimeOverrides", "x", "unknown setting"},
		{"scheduler.maxAttempts", "3.5", "whole number"},
		{"auth.tokenTtl", "forever", "invalid duration"},
	}
	for _, tt := range tests {
		var c config.Config
		wantFieldError(t, c.Set(tt.key, tt.value), tt.key, tt.msg)
	}
}

func TestEnvVar(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"server.listen":                "COMFYFLEET_SERVER_LISTEN",
		"server.publicBaseUrl":         "COMFYFLEET_SERVER_PUBLIC_BASE_URL",
		"store.driver":                 "COMFYFLEET_STORE_DRIVER",
		"store.url":                    "COMFYFLEET_STORE_URL",
		"dataDir":                      "COMFYFLEET_DATA_DIR",
		"auth.secret":                  "COMFYFLEET_AUTH_SECRET",
		"auth.tokenTtl":                "COMFYFLEET_AUTH_TOKEN_TTL",
		"healthCheck.interval":         "COMFYFLEET_HEALTH_CHECK_INTERVAL",
		"healthCheck.failureThreshold": "COMFYFLEET_HEALTH_CHECK_FAILURE_THRESHOLD",
		"demo":                         "COMFYFLEET_DEMO",
	}
	for key, want := range tests {
		if got := config.EnvVar(key); got != want {
			t.Errorf("EnvVar(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestKeysAreSettableAndDistinct(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, k := range config.Keys() {
		env := config.EnvVar(k)
		if other, dup := seen[env]; dup {
			t.Errorf("keys %q and %q share %s", other, k, env)
		}
		seen[env] = k
		var c config.Config
		if err := c.Set(k, ""); err != nil && strings.Contains(err.Error(), "unknown setting") {
			t.Errorf("Keys() lists %q but Set rejects it: %v", k, err)
		}
	}
	if len(seen) < 20 {
		t.Errorf("Keys() has %d keys, want every scalar setting", len(seen))
	}
}
