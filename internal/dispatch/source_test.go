package dispatch

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
)

// TestOpenInFolderStaysInside: whatever names an instance reports, only
// regular files inside the output folder are read.
func TestOpenInFolderStaysInside(t *testing.T) {
	base := t.TempDir()
	out := filepath.Join(base, "output")
	if err := os.MkdirAll(filepath.Join(out, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(base, "secret"), []byte("no"), 0o644))
	must(os.WriteFile(filepath.Join(out, "sub", "a.png"), []byte("yes"), 0o644))
	must(os.Symlink(filepath.Join(base, "secret"), filepath.Join(out, "link.png")))

	f, err := openInFolder(out, comfy.FileRef{Filename: "a.png", Subfolder: "sub"})
	if err != nil {
		t.Fatalf("a file inside: %v", err)
	}
	f.Close()
	for _, ref := range []comfy.FileRef{
		{Filename: "secret", Subfolder: ".."},
		{Filename: "../secret"},
		{Filename: "secret", Subfolder: "sub/../.."},
		{Filename: filepath.Join(base, "secret")},
		{Filename: "link.png"},
		{Filename: "sub"},
	} {
		if f, err := openInFolder(out, ref); err == nil {
			f.Close()
			t.Errorf("openInFolder(%+v) opened a file outside the folder or not a file", ref)
		}
	}
}
