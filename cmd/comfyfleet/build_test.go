package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildStatic builds the command as the Dockerfile does (CGO_ENABLED=0,
// -trimpath, the version linked in) into a temp dir and returns its path.
func buildStatic(t *testing.T, version string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "comfyfleet")
	cmd := exec.Command(gobin, "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/comfyfleet/comfyfleet/internal/buildinfo.version="+version,
		"-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestStaticBinaryAndVersion: the binary the Dockerfile builds is static
// (no ELF interpreter, no shared library), so it runs in an image with no
// libc, and it reports the version linked into it.
func TestStaticBinaryAndVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildStatic(t, "v9.8.7-test")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("comfyfleet %s: %v", arg, err)
		}
		if !strings.HasPrefix(string(out), "comfyfleet v9.8.7-test (") {
			t.Errorf("comfyfleet %s = %q, want the linked version", arg, out)
		}
	}
}
