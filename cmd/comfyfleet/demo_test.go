package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
)

// TestDemo runs "comfyfleet demo" as the README says and checks that the
// printed login lists the simulated instances as alive.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	g, out := startDemo(t, buildBinary(t), 3)
	defer g.stop()
	addr := strings.TrimPrefix(g.url, "http://")
	if !strings.Contains(out.String(), "http://"+addr) {
		t.Errorf("banner does not print the URL http://%s:\n%s", addr, out.String())
	}
	token := g.login()
	apptest.Eventually(t, 15*time.Second, "3 alive instances", func() bool {
		var list []struct{ Alive bool }
		g.do("GET", "/api/instances", token, nil, &list)
		alive := 0
		for _, in := range list {
			if in.Alive {
				alive++
			}
		}
		return len(list) == 3 && alive == 3
	})
	// Two kinds of instance: two large (SDXL, gpu=a100), one small.
	apptest.Eventually(t, 15*time.Second, "two kinds of catalogue", func() bool {
		var list []struct {
			Labels  map[string]string
			Catalog *struct{ Checkpoints []string }
		}
		g.do("GET", "/api/instances", token, nil, &list)
		kinds := map[string]int{}
		for _, in := range list {
			if in.Catalog == nil {
				return false
			}
			kinds[in.Labels["gpu"]+" "+strings.Join(in.Catalog.Checkpoints, ",")]++
		}
		return len(kinds) == 2 && kinds["a100 dreamshaper_8.safetensors,sd_xl_base_1.0.safetensors,v1-5-pruned-emaonly.safetensors"] == 2 &&
			kinds["t4 dreamshaper_8.safetensors,v1-5-pruned-emaonly.safetensors"] == 1
	})
}

// TestDemoListensOnLoopbackByDefault: the demo's login is public, so
// without --listen it serves this machine only.
func TestDemoListensOnLoopbackByDefault(t *testing.T) {
	f, err := parseDemoFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !isLoopback(f.listen) {
		t.Errorf("the demo listens on %q by default, want a loopback address", f.listen)
	}
	addr, err := net.ResolveTCPAddr("tcp", f.listen)
	if err != nil || !addr.IP.IsLoopback() || addr.Port != 3000 {
		t.Errorf("the demo's default %q resolves to %v (%v), want a loopback IP on port 3000", f.listen, addr, err)
	}
	for addr, want := range map[string]bool{":3000": false, "0.0.0.0:3000": false, "[::]:3000": false,
		"10.0.0.5:3000": false, "127.0.0.1:3000": true, "[::1]:3000": true, "localhost:3000": true} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
	if f, _ := parseDemoFlags([]string{"--listen", ":4000"}); f.listen != ":4000" {
		t.Errorf("--listen :4000 gives %q", f.listen)
	}
}

// startDemo starts "comfyfleet demo" of binary bin with instances
// simulated instances on a free address and waits for its banner; out is
// what it printed.
func startDemo(t *testing.T, bin string, instances int) (g *gateway, out *apptest.SyncBuffer) {
	t.Helper()
	addr := freeAddr(t)
	out = &apptest.SyncBuffer{}
	cmd := exec.Command(bin, "demo", "--listen", addr, "--data", filepath.Join(t.TempDir(), "data"),
		"--instances", strconv.Itoa(instances))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g = &gateway{t: t, url: "http://" + addr, cmd: cmd}
	apptest.Eventually(t, 30*time.Second, "the demo banner", func() bool { return strings.Contains(out.String(), "Press Ctrl+C") })
	return g, out
}
