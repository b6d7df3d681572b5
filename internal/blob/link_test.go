package blob_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/blob"
)

// TestLink: a file on the same file system becomes a blob without a copy,
// stays whole when the original goes, and may be linked again.
func TestLink(t *testing.T) {
	dir := t.TempDir()
	d, err := blob.NewDisk(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "out.png")
	if err := os.WriteFile(src, []byte("image bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := d.Link(t.Context(), "id-1", src, f, 5); !errors.Is(err, blob.ErrTooLarge) {
		t.Errorf("Link over maxBytes: %v, want ErrTooLarge", err)
	}
	for range 2 {
		n, ok, err := d.Link(t.Context(), "id-1", src, f, 0)
		if err != nil || !ok || n != 11 {
			t.Fatalf("Link = %d, %v, %v; want 11, true, nil", n, ok, err)
		}
	}
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	rc, err := d.Open(t.Context(), "id-1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "image bytes" {
		t.Errorf("blob = %q after the original was removed", b)
	}
}

// TestLinkRefusesAnotherFile: a path that no longer names the open file
// (swapped meanwhile) is not stored.
func TestLinkRefusesAnotherFile(t *testing.T) {
	dir := t.TempDir()
	d, err := blob.NewDisk(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "out.png")
	if err := os.WriteFile(src, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Link(t.Context(), "id-2", src, f, 0); ok || err != nil {
		t.Errorf("Link of a swapped path = %v, %v; want false, nil", ok, err)
	}
	if _, err := d.Open(t.Context(), "id-2"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open after a refused link: %v, want ErrNotFound", err)
	}
}
