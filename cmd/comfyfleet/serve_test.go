package main

import (
	"strings"
	"testing"
)

// TestSetRefusesSecrets: a secret given with --set would be readable in the
// process's command line (ps, /proc, the profiler's cmdline page): it is
// refused with a message that names the environment variable to use.
func TestSetRefusesSecrets(t *testing.T) {
	data := "--data=" + t.TempDir()
	tests := []struct{ set, env string }{
		{"auth.secret=0123456789abcdef0123456789abcdef", "COMFYFLEET_AUTH_SECRET"},
		{"auth.adminPassword=long-enough-password", "COMFYFLEET_ADMIN_PASSWORD"},
		{"store.url=redis://:hunter2@127.0.0.1:6379/0", "COMFYFLEET_STORE_URL"},
	}
	for _, tt := range tests {
		_, err := loadConfig("serve", []string{data, "--set", tt.set})
		if err == nil || !strings.Contains(err.Error(), tt.env) {
			t.Errorf("--set %s: %v, want a refusal naming %s", tt.set, err, tt.env)
		}
	}
	if _, err := loadConfig("serve", []string{data, "--set", "store.url=redis://127.0.0.1:6379/0"}); err != nil {
		t.Errorf("--set store.url without a password: %v", err)
	}
}
