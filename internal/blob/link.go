package blob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Linker is a Store that can take a file of the local file system without
// copying its bytes.
type Linker interface {
	// Link makes the file f, open at path, the blob id, without copying it
	// where it can. ok false means it could not (another file system, no
	// permission, a store elsewhere) and nothing was stored: copy instead.
	// A file larger than maxBytes (> 0) is ErrTooLarge.
	Link(ctx context.Context, id, path string, f *os.File, maxBytes int64) (n int64, ok bool, err error)
}

var _ Linker = (*Disk)(nil)

// Link implements Linker with a hard link, on the same file system only.
// The blob then shares the file's bytes: it stays whole when the original
// is deleted, and it would change if the original were rewritten in place
// (ComfyUI never rewrites an output: each save gets a new name). The link
// is kept only if it names the very file f is open on, so a path swapped
// for another file meanwhile is never stored.
func (d *Disk) Link(ctx context.Context, id, path string, f *os.File, maxBytes int64) (int64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	final, err := d.path(id)
	if err != nil {
		return 0, false, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return 0, false, nil
	}
	if maxBytes > 0 && st.Size() > maxBytes {
		return 0, false, ErrTooLarge
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return 0, false, fmt.Errorf("blob: link %s: %w", id, err)
	}
	err = os.Link(path, final)
	if errors.Is(err, fs.ErrExist) {
		err = d.replaceByLink(path, final) // collected again: the same bytes under the same id
	}
	if err != nil {
		return 0, false, nil // EXDEV, EPERM, ...: the caller copies
	}
	if got, err := os.Lstat(final); err != nil || !os.SameFile(st, got) {
		_ = os.Remove(final)
		return 0, false, nil
	}
	return st.Size(), true, nil
}

// replaceByLink links path under a temp name and renames it over final,
// so readers of final see the old file or the new one, never none.
func (d *Disk) replaceByLink(path, final string) error {
	tmp, err := os.CreateTemp(d.tmp, "link-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_ = tmp.Close()
	_ = os.Remove(name)
	if err := os.Link(path, name); err != nil {
		return err
	}
	if err := os.Rename(name, final); err != nil {
		_ = os.Remove(name)
		return err
	}
	return nil
}
