package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func newDisk(t *testing.T) *Disk {
	t.Helper()
	return newDiskAt(t, t.TempDir())
}

func readAll(t *testing.T, d *Disk, id string) []byte {
	t.Helper()
	f, err := d.Open(t.Context(), id)
	if err != nil {
		t.Fatalf("Open(%q): %v", id, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %q: %v", id, err)
	}
	if f.Size() != int64(len(b)) {
		t.Errorf("Size() = %d, want %d", f.Size(), len(b))
	}
	return b
}

// tempFiles lists what is left in the temp directory.
func tempFiles(t *testing.T, d *Disk) []string {
	t.Helper()
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		t.Fatalf("read temp dir: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDiskRoundTrip(t *testing.T) {
	t.Parallel()
	d := newDisk(t)
	ctx := t.Context()
	id := uuid.NewString()
	want := []byte("hello, fleet")

	n, err := d.Put(ctx, id, bytes.NewReader(want), 0)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("Put = %d, %v; want %d, nil", n, err, len(want))
	}
	if got := readAll(t, d, id); !bytes.Equal(got, want) {
		t.Errorf("read back %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(d.Dir(), id[:2], id)); err != nil {
		t.Errorf("blob not sharded under %s/: %v", id[:2], err)
	}
	if err := d.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := d.Open(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Delete: err = %v, want ErrNotFound", err)
	}
	if err := d.Delete(ctx, id); err != nil {
		t.Errorf("Delete of a missing blob: %v, want nil", err)
	}
}

func TestDiskTooLarge(t *testing.T) {
	t.Parallel()
	d := newDisk(t)
	ctx := t.Context()
	id := uuid.NewString()

	if _, err := d.Put(ctx, id, strings.NewReader("0123456789"), 10); err != nil {
		t.Fatalf("Put of exactly maxBytes: %v", err)
	}
	tooBig := uuid.NewString()
	_, err := d.Put(ctx, tooBig, strings.NewReader("0123456789A"), 10)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put over maxBytes: err = %v, want ErrTooLarge", err)
	}
	if _, err := d.Open(ctx, tooBig); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after ErrTooLarge: err = %v, want ErrNotFound", err)
	}
	if left := tempFiles(t, d); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

// failingReader yields some bytes, then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := min(r.n, len(p))
	r.n -= n
	return n, nil
}

func TestDiskFailedPutLeavesNothing(t *testing.T) {
	t.Parallel()
	d := newDisk(t)
	id := uuid.NewString()
	if _, err := d.Put(t.Context(), id, &failingReader{n: 1000}, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Put: err = %v, want io.ErrUnexpectedEOF", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.Put(ctx, id, strings.NewReader("x"), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled ctx: err = %v, want context.Canceled", err)
	}
	if _, err := d.Open(t.Context(), id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open: err = %v, want ErrNotFound", err)
	}
	if left := tempFiles(t, d); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestDiskConcurrentPuts(t *testing.T) {
	t.Parallel()
	d := newDisk(t)
	ctx := t.Context()
	const writers = 16
	shared := uuid.NewString()
	contents := make([][]byte, writers)
	ids := make([]string, writers)
	var wg sync.WaitGroup
	for i := range writers {
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
		ids[i] = fmt.Sprintf("00-%d", i) // same shard
		wg.Go(func() {
			if _, err := d.Put(ctx, ids[i], bytes.NewReader(contents[i]), 0); err != nil {
				t.Errorf("Put(%s): %v", ids[i], err)
			}
			if _, err := d.Put(ctx, shared, bytes.NewReader(contents[i]), 0); err != nil {
				t.Errorf("Put(shared): %v", err)
			}
		})
	}
	wg.Wait()
	for i, id := range ids {
		if got := readAll(t, d, id); !bytes.Equal(got, contents[i]) {
			t.Errorf("blob %s: wrong content (%d bytes)", id, len(got))
		}
	}
	got := readAll(t, d, shared)
	if !bytes.Equal(got, bytes.Repeat(got[:1], 64<<10)) {
		t.Errorf("shared blob mixes writers: a Put was not atomic")
	}
	if left := tempFiles(t, d); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestNewDiskRemovesStaleTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := newDiskAt(t, dir)
	stale := filepath.Join(d.tmp, "put-stale")
	fresh := filepath.Join(d.tmp, "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	newDiskAt(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file removed: %v", err)
	}
}

func newDiskAt(t *testing.T, dir string) *Disk {
	t.Helper()
	d, err := NewDisk(dir)
	if err != nil {
		t.Fatalf("NewDisk: %v", err)
	}
	return d
}

func TestValidIDAccepts(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "ab", uuid.NewString(), "file_1.v2"} {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false, want true", id)
		}
	}
}
