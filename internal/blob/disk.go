package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// tmpDirName holds partial writes. Ids never start with '.', so it cannot
// collide with a shard directory.
const tmpDirName = ".tmp"

// staleTemp is the age after which NewDisk removes leftover temp files of a
// crashed process; no upload takes that long.
const staleTemp = 24 * time.Hour

// Disk is a Store on the local file system. A blob with id "ab12..." lives at
// <dir>/ab/ab12...; it is written to <dir>/.tmp first, synced (unless
// NoSync), then renamed into place, so a reader never sees a partial blob.
// Disk is safe for concurrent use.
type Disk struct {
	dir string
	tmp string
	// noSync skips the fsync before the rename: a crash of the process
	// loses nothing, a power loss may leave a blob empty.
	noSync bool
}

// DiskOption configures NewDisk.
type DiskOption func(*Disk)

// NoSync skips the fsync of each blob. The rename still makes a blob appear
// whole or not at all to readers and after a process crash; only a power
// loss or OS crash may lose the newest blobs. It makes Put several times
// cheaper on disks with slow flushes.
func NoSync() DiskOption { return func(d *Disk) { d.noSync = true } }

var _ Store = (*Disk)(nil)

// NewDisk returns a Disk rooted at dir, creating the directory when missing
// and removing temp files a crashed process left behind.
func NewDisk(dir string, opts ...DiskOption) (*Disk, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: resolve dir: %w", err)
	}
	d := &Disk{dir: abs, tmp: filepath.Join(abs, tmpDirName)}
	for _, o := range opts {
		o(d)
	}
	if err := os.MkdirAll(d.tmp, 0o750); err != nil {
		return nil, fmt.Errorf("blob: create dir: %w", err)
	}
	d.removeStaleTemps(time.Now())
	return d, nil
}

// Dir returns the root directory.
func (d *Disk) Dir() string { return d.dir }

// Put implements Store.
func (d *Disk) Put(ctx context.Context, id string, r io.Reader, maxBytes int64) (int64, error) {
	final, err := d.path(id)
	if err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(d.tmp, "put-*")
	if err != nil {
		return 0, fmt.Errorf("blob: put %s: %w", id, err)
	}
	n, err := d.fill(ctx, f, r, maxBytes)
	if err == nil {
		err = d.commit(f.Name(), final)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return 0, fmt.Errorf("blob: put %s: %w", id, err)
	}
	return n, nil
}

// fill copies r into f, enforcing maxBytes, then syncs and closes f.
func (d *Disk) fill(ctx context.Context, f *os.File, r io.Reader, maxBytes int64) (int64, error) {
	src := io.Reader(readerFunc(func(p []byte) (int, error) {
		if err := ctx.Err(); err != nil {
			return 0, err // stop a copy once ctx is done
		}
		return r.Read(p)
	}))
	if maxBytes > 0 {
		src = io.LimitReader(src, maxBytes+1)
	}
	n, err := io.Copy(f, src)
	if err == nil && maxBytes > 0 && n > maxBytes {
		err = ErrTooLarge
	}
	if err == nil && !d.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// commit moves a complete temp file to its final path.
func (d *Disk) commit(tmp, final string) error {
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return err
	}
	return os.Rename(tmp, final)
}

// Open implements Store.
func (d *Disk) Open(ctx context.Context, id string) (File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", id, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("blob: stat %s: %w", id, err)
	}
	return &diskFile{File: f, size: st.Size(), mod: st.ModTime()}, nil
}

// Delete implements Store.
func (d *Disk) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: delete %s: %w", id, err)
	}
	return nil
}

// path maps an id to <dir>/<first two characters>/<id>.
func (d *Disk) path(id string) (string, error) {
	if !ValidID(id) {
		return "", ErrInvalidID
	}
	shard := id[:min(2, len(id))]
	return filepath.Join(d.dir, shard, id), nil
}

// removeStaleTemps deletes temp files older than staleTemp. Younger ones may
// belong to a Put in flight in another process sharing the directory.
func (d *Disk) removeStaleTemps(now time.Time) {
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && now.Sub(info.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(d.tmp, e.Name()))
		}
	}
}

// diskFile is an open blob on disk.
type diskFile struct {
	*os.File
	size int64
	mod  time.Time
}

func (f *diskFile) Size() int64        { return f.size }
func (f *diskFile) ModTime() time.Time { return f.mod }

// readerFunc adapts a function to io.Reader.
type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
