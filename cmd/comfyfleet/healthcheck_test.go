package main

import (
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
)

// TestHealthcheck: the image's HEALTHCHECK command passes on a serving
// gateway, with --ready fails while it drains, and fails when nothing
// listens.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	data := "--data=" + t.TempDir()
	listen := "--listen=" + e.App().Addr()
	if err := runHealthcheck(t.Context(), []string{data, listen}); err != nil {
		t.Errorf("healthcheck of a serving gateway: %v", err)
	}
	if err := runHealthcheck(t.Context(), []string{data, listen, "--ready"}); err != nil {
		t.Errorf("healthcheck --ready of a serving gateway: %v", err)
	}
	e.App().SetDraining(true)
	if err := runHealthcheck(t.Context(), []string{data, listen, "--ready"}); err == nil {
		t.Error("healthcheck --ready of a draining gateway passed")
	}
	if err := runHealthcheck(t.Context(), []string{data, listen}); err != nil {
		t.Errorf("healthcheck (live) of a draining gateway: %v", err)
	}
	e.Stop()
	if err := runHealthcheck(t.Context(), []string{data, listen}); err == nil {
		t.Error("healthcheck with no gateway passed")
	}
}

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		":3000": "127.0.0.1:3000", "0.0.0.0:3000": "127.0.0.1:3000", "[::]:3000": "127.0.0.1:3000",
		"10.0.0.5:3000": "10.0.0.5:3000", "127.0.0.1:8080": "127.0.0.1:8080",
	} {
		if got := loopbackAddr(in); got != want {
			t.Errorf("loopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
