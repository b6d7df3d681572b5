package config_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

func TestMerge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		patch    string
		check    func(t *testing.T, got config.Config)
		wantKeys []string
	}{
		{
			name:  "servers replace the list",
			patch: `{"servers":[{"id":"new","ip":"10.0.0.9","ports":"9001-9002"}]}`,
			check: func(t *testing.T, got config.Config) {
				want := []config.Server{{ID: "new", Name: "new", IP: "10.0.0.9", Ports: config.Ports{9001, 9002}}}
				if diff := cmp.Diff(want, got.Servers); diff != "" {
					t.Errorf("servers mismatch (-want +got):\n%s", diff)
				}
			},
			wantKeys: []string{"servers"},
		},
		{
			name:  "healthCheck merges key by key",
			patch: `{"healthCheck":{"interval":10000}}`,
			check: func(t *testing.T, got config.Config) {
				want := config.HealthCheck{Interval: config.Millis(10 * time.Second), Timeout: config.Millis(5 * time.Second), FailureThreshold: 2,
					DrainAfterFailures: 3, DrainCooldown: config.Millis(5 * time.Minute), ProbeTimeout: config.Millis(time.Minute)}
				if diff := cmp.Diff(want, got.HealthCheck); diff != "" {
					t.Errorf("healthCheck mismatch (-want +got):\n%s", diff)
				}
			},
			wantKeys: []string{"healthCheck.interval"},
		},
		{
			name:  "several sections",
			patch: `{"scheduler":{"maxAttempts":5},"files":{"maxUploadBytes":1024},"server":{"publicBaseUrl":"https://cdn.example.com/"}}`,
			check: func(t *testing.T, got config.Config) {
				if got.Scheduler.MaxAttempts != 5 || got.Files.MaxUploadBytes != 1024 || got.Server.PublicBaseURL != "https://cdn.example.com" {
					t.Errorf("got scheduler %+v, files %+v, server %+v", got.Scheduler, got.Files, got.Server)
				}
			},
			wantKeys: []string{"files.maxUploadBytes", "scheduler.maxAttempts", "server.publicBaseUrl"},
		},
		{
			name: "every scheduler key and the output bounds are live",
			patch: `{"scheduler":{"placement":"fifo","warmWindow":10000,"priorityAging":5000,"interruptGrace":2000,"prefetch":0},` +
				`"files":{"maxOutputBytes":1048576,"outputTimeout":60000}}`,
			check: func(t *testing.T, got config.Config) {
				s, f := got.Scheduler, got.Files
				if s.Placement != config.PlacementFIFO || s.WarmWindow != config.Millis(10*time.Second) || s.PriorityAging != config.Millis(5*time.Second) ||
					s.Prefetch == nil || *s.Prefetch != 0 ||
					s.InterruptGrace != config.Millis(2*time.Second) || f.MaxOutputBytes != 1<<20 || f.OutputTimeout != config.Millis(time.Minute) {
					t.Errorf("got scheduler %+v, files %+v", s, f)
				}
			},
			wantKeys: []string{"files.maxOutputBytes", "files.outputTimeout", "scheduler.interruptGrace",
				"scheduler.placement", "scheduler.prefetch", "scheduler.priorityAging", "scheduler.warmWindow"},
		},
		{
			name:  "limits are live",
			patch: `{"limits":{"maxNodes":100,"maxPendingPerUser":-1}}`,
			check: func(t *testing.T, got config.Config) {
				want := config.Limits{MaxNodes: 100, MaxTaskBytes: 8 << 20, MaxPendingPerUser: config.NoQuota, MaxStoredBytesPerUser: 10 << 30}
				if got.Limits != want {
					t.Errorf("limits: got %+v, want %+v", got.Limits, want)
				}
			},
			wantKeys: []string{"limits.maxNodes", "limits.maxPendingPerUser"},
		},
		{
			name:  "null means the default",
			patch: `{"scheduler":{"taskTimeout":null}}`,
			check: func(t *testing.T, got config.Config) {
				if got.Scheduler.TaskTimeout != config.Millis(10*time.Minute) {
					t.Errorf("taskTimeout: got %v, want the default", time.Duration(got.Scheduler.TaskTimeout))
				}
			},
			wantKeys: []string{"scheduler.taskTimeout"},
		},
		{
			name:  "restart-only key with its current value is no change",
			patch: `{"server":{"listen":":3000"},"store":{"driver":"sqlite"},"healthCheck":{"interval":30000}}`,
			check: func(t *testing.T, got config.Config) {
				if diff := cmp.Diff(validConfig(), got); diff != "" {
					t.Errorf("config changed (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "empty patch",
			patch: `{}`,
			check: func(t *testing.T, got config.Config) {
				if diff := cmp.Diff(validConfig(), got); diff != "" {
					t.Errorf("config changed (-want +got):\n%s", diff)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := validConfig().Merge([]byte(tt.patch))
			if err != nil {
				t.Fatalf("Merge(%s): %v", tt.patch, err)
			}
			tt.check(t, got)
			if diff := cmp.Diff(tt.wantKeys, got.RuntimeKeys); diff != "" {
				t.Errorf("RuntimeKeys mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, patch, field, msg string
	}{
		{"unknown top-level key", `{"nope":1}`, "nope", "unknown field"},
		{"unknown nested key", `{"healthCheck":{"intervall":1000}}`, "healthCheck.intervall", "unknown field"},
		{"unknown server key", `{"servers":[{"id":"a","ip":"1.2.3.4","ports":[1],"gpu":true}]}`, "servers[0].gpu", "unknown field"},
		{"store needs restart", `{"store":{"driver":"redis"}}`, "store.driver", "restart"},
		{"dataDir needs restart", `{"dataDir":"/elsewhere"}`, "dataDir", "restart"},
		{"listen needs restart", `{"server":{"listen":":4000"}}`, "server.listen", "restart"},
		{"secret needs restart", `{"auth":{"secret":"0123456789abcdef0123456789abcdef"}}`, "auth.secret", "restart"},
		{"lease ttl needs restart", `{"store":{"leaseTtl":5000}}`, "store.leaseTtl", "restart"},
		{"demo is not a key", `{"demo":true}`, "demo", "unknown field"},
		{"admin password is not a key", `{"auth":{"adminPassword":"long-enough"}}`, "auth.adminPassword", "unknown field"},
		{"runtime overrides are read-only", `{"runtimeOverrides":["dataDir"]}`, "runtimeOverrides", "read-only"},
		{"the ignored document's note is read-only", `{"runtimeOverridesIgnored":"x"}`, "runtimeOverridesIgnored", "read-only"},
		{"reset with other keys", `{"reset":true,"servers":[]}`, "reset", "alone"},
		{"section not an object", `{"healthCheck":5}`, "healthCheck", "must be an object"},
		{"wrong type", `{"healthCheck":{"failureThreshold":"two"}}`, "healthCheck.failureThreshold", "whole number"},
		{"bad ports", `{"servers":[{"id":"a","ip":"1.2.3.4","ports":"9-1"}]}`, "servers[0].ports", "reversed"},
		{"validation", `{"servers":[{"id":"a","ip":"1.2.3.4","ports":[8001]},{"id":"a","ip":"1.2.3.5","ports":[8001]}]}`,
			"servers[1].id", "duplicate id"},
		{"interval", `{"healthCheck":{"interval":50,"timeout":50}}`, "healthCheck.interval", "must be at least 100 ms"},
		{"not an object", `[1]`, "", "JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := validConfig().Merge([]byte(tt.patch))
			wantFieldError(t, err, tt.field, tt.msg)
		})
	}
	if _, err := validConfig().Merge([]byte(`{"servers":`)); err == nil {
		t.Error("Merge(malformed JSON): got no error")
	}
}

func TestMergeAcceptsPublicBack(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.Auth.Secret = "0123456789abcdef0123456789abcdef"
	c.Auth.Users = []config.User{{Username: "alice", Role: "admin", PasswordHash: testHash(t)}}
	c.Store.URL = "redis://:hunter2@redis:6379/0"
	c, err := c.Merge([]byte(`{"healthCheck":{"interval":20000}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(c.Public())
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Merge(body)
	if err != nil {
		t.Fatalf("Merge(Public()): %v", err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("Merge(Public()) changed the config (-want +got):\n%s", diff)
	}
}

func TestPublicRedacts(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.Auth.Secret = "0123456789abcdef0123456789abcdef"
	c.Auth.AdminPassword = "long-enough"
	c.Auth.Users = []config.User{{Username: "alice", Role: "admin", PasswordHash: testHash(t)}}
	c.Store.URL = "redis://:hunter2@redis:6379/0"
	b, err := json.Marshal(c.Public())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Auth struct {
			Secret        string
			AdminPassword *string
			Users         []struct{ PasswordHash string }
		}
		Store struct{ URL string }
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Auth.Secret != "<redacted>" || got.Auth.AdminPassword != nil || got.Auth.Users[0].PasswordHash != "<redacted>" ||
		got.Store.URL != "redis://:xxxxx@redis:6379/0" {
		t.Errorf("Public() leaks a secret: %s", b)
	}
	if c.Auth.Users[0].PasswordHash == "<redacted>" {
		t.Error("Public() changed the config it was called on")
	}
	if p := config.Default().Public(); p.Auth.Secret != "" {
		t.Errorf("Public() of an unset secret: got %q, want empty", p.Auth.Secret)
	}
	empty, err := json.Marshal(config.Default().Public())
	if err != nil {
		t.Fatal(err)
	}
	if s := string(empty); !strings.Contains(s, `"servers":[]`) || !strings.Contains(s, `"users":[]`) {
		t.Errorf("Public() of no servers and users: %s, want empty lists", s)
	}
}

func TestRuntimeRoundTrip(t *testing.T) {
	t.Parallel()
	base := validConfig()
	live, err := base.Merge([]byte(`{"servers":[{"id":"x","ip":"10.0.0.1","ports":"8001-8002"}],"healthCheck":{"interval":15000,"timeout":5000}}`))
	if err != nil {
		t.Fatal(err)
	}
	live, err = live.Merge([]byte(`{"scheduler":{"maxAttempts":4}}`))
	if err != nil {
		t.Fatal(err)
	}
	doc := live.Runtime()
	const want = `{"healthCheck":{"interval":15000},"scheduler":{"maxAttempts":4},"servers":[{"id":"x","name":"x","ip":"10.0.0.1","ports":[8001,8002]}]}`
	if string(doc) != want {
		t.Errorf("Runtime() = %s, want %s", doc, want)
	}
	restarted, err := config.ApplyRuntime(base, doc)
	if err != nil {
		t.Fatalf("ApplyRuntime: %v", err)
	}
	if diff := cmp.Diff(live, restarted); diff != "" {
		t.Errorf("ApplyRuntime(Runtime()) mismatch (-want +got):\n%s", diff)
	}

	// A key the document holds keeps its value even when the file changes it,
	// and stays in the document even when it equals the file.
	edited := base
	edited.HealthCheck.Interval = config.Millis(15 * time.Second)
	edited.HealthCheck.Timeout = config.Millis(1 * time.Second)
	restarted, err = config.ApplyRuntime(edited, doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(restarted.Runtime()); got != want {
		t.Errorf("Runtime() after restart = %s, want %s", got, want)
	}
	if restarted.HealthCheck.Timeout != config.Millis(time.Second) {
		t.Errorf("timeout: got %v, want the file's 1s", time.Duration(restarted.HealthCheck.Timeout))
	}
}

func TestApplyRuntimeEmpty(t *testing.T) {
	t.Parallel()
	base := validConfig()
	base.RuntimeKeys = []string{"servers"}
	for _, doc := range []string{"", " ", "{}"} {
		got, err := config.ApplyRuntime(base, []byte(doc))
		if err != nil {
			t.Fatalf("ApplyRuntime(%q): %v", doc, err)
		}
		if got.RuntimeKeys != nil {
			t.Errorf("ApplyRuntime(%q).RuntimeKeys = %v, want none", doc, got.RuntimeKeys)
		}
		if got := string(got.Runtime()); got != "{}" {
			t.Errorf("Runtime() = %s, want {}", got)
		}
	}
	if _, err := config.ApplyRuntime(base, []byte(`{"store":{"driver":"redis"}}`)); err == nil {
		t.Error("ApplyRuntime with a restart-only key: got no error")
	}
}

func TestIsReset(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]bool{
		`{"reset":true}`: true, ` { "reset" : true } `: true, `{"reset":false}`: false,
		`{"reset":true,"servers":[]}`: false, `{}`: false, `nope`: false, `{"reset":"true"}`: false,
	} {
		if got := config.IsReset([]byte(body)); got != want {
			t.Errorf("IsReset(%s) = %v, want %v", body, got, want)
		}
	}
}
