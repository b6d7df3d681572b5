package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

// fieldErrors flattens the FieldErrors of a (joined, wrapped) error.
func fieldErrors(err error) []*config.FieldError {
	var out []*config.FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *config.FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			walk(errors.Unwrap(err))
		}
	}
	walk(err)
	return out
}

// wantFieldError fails unless err holds a FieldError for field whose
// message contains msg.
func wantFieldError(t *testing.T, err error, field, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s: ...%s...", field, msg)
	}
	for _, fe := range fieldErrors(err) {
		if fe.Field == field && strings.Contains(fe.Message, msg) {
			return
		}
	}
	t.Fatalf("got error %q, want a FieldError %s: ...%s...", err, field, msg)
}

// writeFile writes content to a file in a temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testHash is a cheap bcrypt hash of "secret-password".
func testHash(t *testing.T) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("secret-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// validConfig is a defaulted config with two servers that validates.
func validConfig() config.Config {
	c := config.Config{
		Servers: []config.Server{
			{ID: "server-1", Name: "主服务器", IP: "127.0.0.1", Ports: config.Ports{8001, 8002}},
			{ID: "server-2", IP: "gpu.local", Ports: config.Ports{8001}},
		},
	}
	c.WithDefaults()
	return c
}
