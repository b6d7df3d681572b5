// Package blobtest is the conformance suite of blob.Store: every
// implementation (the disk, S3) runs the same tests, so the rest of the
// gateway may rely on the contract whatever the store.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/blob"
)

// Options tunes the suite for one store.
type Options struct {
	// Large is the size of the blob that must cross the store's internal
	// boundaries (a part size, a buffer); 0 skips that test.
	Large int
}

// Run runs every conformance test against stores made by newStore. Each
// test gets its own store; stores may share a backend, since every test
// uses fresh random ids.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store, o Options) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"OpenMissing", testOpenMissing},
		{"PutReplaces", testPutReplaces},
		{"Empty", testEmpty},
		{"TooLarge", testTooLarge},
		{"FailedPutLeavesNothing", testFailedPutLeavesNothing},
		{"FailedReplaceKeepsOld", testFailedReplaceKeepsOld},
		{"InvalidID", testInvalidID},
		{"ConcurrentPuts", testConcurrentPuts},
		{"SeekAndRead", testSeekAndRead},
		{"ServeContentRange", testServeContentRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	if o.Large > 0 {
		t.Run("Large", func(t *testing.T) {
			t.Parallel()
			testLarge(t, newStore(t), o.Large)
		})
	}
}

// ReadAll opens id and reads it whole, checking Size against what was read.
func ReadAll(t *testing.T, s blob.Store, id string) []byte {
	t.Helper()
	f, err := s.Open(t.Context(), id)
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

func put(t *testing.T, s blob.Store, id string, b []byte) {
	t.Helper()
	n, err := s.Put(t.Context(), id, bytes.NewReader(b), 0)
	if err != nil || n != int64(len(b)) {
		t.Fatalf("Put(%s) = %d, %v; want %d, nil", id, n, err, len(b))
	}
}

func wantMissing(t *testing.T, s blob.Store, id, after string) {
	t.Helper()
	f, err := s.Open(t.Context(), id)
	if err == nil {
		f.Close()
	}
	if !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open after %s: err = %v, want ErrNotFound", after, err)
	}
}

func testRoundTrip(t *testing.T, s blob.Store) {
	ctx := t.Context()
	id := uuid.NewString()
	want := []byte("hello, fleet")
	put(t, s, id, want)
	f, err := s.Open(ctx, id)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if f.ModTime().IsZero() {
		t.Errorf("ModTime() is zero")
	}
	f.Close()
	if got := ReadAll(t, s, id); !bytes.Equal(got, want) {
		t.Errorf("read back %q, want %q", got, want)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, s, id, "Delete")
	if err := s.Delete(ctx, id); err != nil {
		t.Errorf("Delete of a missing blob: %v, want nil", err)
	}
}

func testOpenMissing(t *testing.T, s blob.Store) {
	wantMissing(t, s, uuid.NewString(), "no Put")
}

func testPutReplaces(t *testing.T, s blob.Store) {
	id := uuid.NewString()
	for _, v := range []string{"first version", "second"} {
		put(t, s, id, []byte(v))
	}
	if got := string(ReadAll(t, s, id)); got != "second" {
		t.Errorf("read back %q, want %q", got, "second")
	}
}

func testEmpty(t *testing.T, s blob.Store) {
	id := uuid.NewString()
	put(t, s, id, nil)
	if got := ReadAll(t, s, id); len(got) != 0 {
		t.Errorf("read back %d bytes, want 0", len(got))
	}
}

func testTooLarge(t *testing.T, s blob.Store) {
	ctx := t.Context()
	id := uuid.NewString()
	if _, err := s.Put(ctx, id, strings.NewReader("0123456789"), 10); err != nil {
		t.Fatalf("Put of exactly maxBytes: %v", err)
	}
	tooBig := uuid.NewString()
	_, err := s.Put(ctx, tooBig, strings.NewReader("0123456789A"), 10)
	if !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("Put over maxBytes: err = %v, want ErrTooLarge", err)
	}
	wantMissing(t, s, tooBig, "ErrTooLarge")
}

// FailingReader yields N bytes, then io.ErrUnexpectedEOF.
type FailingReader struct{ N int }

func (r *FailingReader) Read(p []byte) (int, error) {
	if r.N <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := min(r.N, len(p))
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.N -= n
	return n, nil
}

func testFailedPutLeavesNothing(t *testing.T, s blob.Store) {
	id := uuid.NewString()
	if _, err := s.Put(t.Context(), id, &FailingReader{N: 1000}, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Put: err = %v, want io.ErrUnexpectedEOF", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Put(ctx, id, strings.NewReader("x"), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled ctx: err = %v, want context.Canceled", err)
	}
	wantMissing(t, s, id, "failed Puts")
}

func testFailedReplaceKeepsOld(t *testing.T, s blob.Store) {
	id := uuid.NewString()
	put(t, s, id, []byte("kept"))
	if _, err := s.Put(t.Context(), id, &FailingReader{N: 100}, 0); err == nil {
		t.Fatal("Put of a failing stream: err = nil")
	}
	if _, err := s.Put(t.Context(), id, strings.NewReader("far too long"), 4); !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("Put over maxBytes: err = %v, want ErrTooLarge", err)
	}
	if got := string(ReadAll(t, s, id)); got != "kept" {
		t.Errorf("after failed replacements read %q, want %q", got, "kept")
	}
}

func testInvalidID(t *testing.T, s blob.Store) {
	ctx := t.Context()
	for _, id := range []string{
		"", ".", "..", "../x", "a/b", `a\b`, "a..b", ".tmp", ".hidden", "a\x00b", "a b", "a?b", "a%2Fb",
		strings.Repeat("a", 129),
	} {
		if _, err := s.Put(ctx, id, strings.NewReader("x"), 0); !errors.Is(err, blob.ErrInvalidID) {
			t.Errorf("Put(%q): err = %v, want ErrInvalidID", id, err)
		}
		if _, err := s.Open(ctx, id); !errors.Is(err, blob.ErrInvalidID) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidID", id, err)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, blob.ErrInvalidID) {
			t.Errorf("Delete(%q): err = %v, want ErrInvalidID", id, err)
		}
	}
}

func testConcurrentPuts(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const writers = 8
	shared := uuid.NewString()
	contents := make([][]byte, writers)
	ids := make([]string, writers)
	var wg sync.WaitGroup
	for i := range writers {
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
		ids[i] = fmt.Sprintf("%s-%d", shared, i)
		wg.Go(func() {
			if _, err := s.Put(ctx, ids[i], bytes.NewReader(contents[i]), 0); err != nil {
				t.Errorf("Put(%s): %v", ids[i], err)
			}
			if _, err := s.Put(ctx, shared, bytes.NewReader(contents[i]), 0); err != nil {
				t.Errorf("Put(shared): %v", err)
			}
		})
	}
	wg.Wait()
	for i, id := range ids {
		if got := ReadAll(t, s, id); !bytes.Equal(got, contents[i]) {
			t.Errorf("blob %s: wrong content (%d bytes)", id, len(got))
		}
	}
	got := ReadAll(t, s, shared)
	if len(got) != 64<<10 || !bytes.Equal(got, bytes.Repeat(got[:1], 64<<10)) {
		t.Errorf("shared blob mixes writers: a Put was not atomic")
	}
}

func testSeekAndRead(t *testing.T, s blob.Store) {
	id := uuid.NewString()
	put(t, s, id, []byte("0123456789"))
	f, err := s.Open(t.Context(), id)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 3)
	steps := []struct {
		off    int64
		whence int
		pos    int64
		want   string
	}{
		{0, io.SeekStart, 0, "012"},
		{4, io.SeekStart, 4, "456"},
		{-2, io.SeekCurrent, 5, "567"},
		{-3, io.SeekEnd, 7, "789"},
		{1, io.SeekStart, 1, "123"},
	}
	for _, st := range steps {
		pos, err := f.Seek(st.off, st.whence)
		if err != nil || pos != st.pos {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", st.off, st.whence, pos, err, st.pos)
		}
		if _, err := io.ReadFull(f, buf); err != nil || string(buf) != st.want {
			t.Fatalf("read at %d = %q, %v; want %q", st.pos, buf, err, st.want)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want 0, EOF", n, err)
	}
}

func testServeContentRange(t *testing.T, s blob.Store) {
	id := uuid.NewString()
	put(t, s, id, []byte("0123456789"))
	for _, tc := range []struct {
		rng    string
		status int
		body   string
	}{
		{"", http.StatusOK, "0123456789"},
		{"bytes=2-5", http.StatusPartialContent, "2345"},
		{"bytes=-3", http.StatusPartialContent, "789"},
		{"bytes=8-", http.StatusPartialContent, "89"},
		{"bytes=20-30", http.StatusRequestedRangeNotSatisfiable, ""},
	} {
		f, err := s.Open(t.Context(), id)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		req := httptest.NewRequest(http.MethodGet, "/files/x", nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		rec := httptest.NewRecorder()
		http.ServeContent(rec, req, "x.bin", f.ModTime(), f)
		f.Close()
		body := rec.Body.String()
		if tc.status != http.StatusOK && tc.status != http.StatusPartialContent {
			body = "" // ServeContent's error text
		}
		if rec.Code != tc.status || body != tc.body {
			t.Errorf("Range %q: status %d body %q, want %d %q", tc.rng, rec.Code, body, tc.status, tc.body)
		}
	}
}

func testLarge(t *testing.T, s blob.Store, size int) {
	ctx := t.Context()
	want := make([]byte, size)
	_, _ = rand.Read(want)
	id := uuid.NewString()
	// A reader without WriteTo or Len: the store cannot know the size.
	n, err := s.Put(ctx, id, io.MultiReader(bytes.NewReader(want)), 0)
	if err != nil || n != int64(size) {
		t.Fatalf("Put = %d, %v; want %d, nil", n, err, size)
	}
	if got := ReadAll(t, s, id); !bytes.Equal(got, want) {
		t.Fatalf("large blob read back differs")
	}
	f, err := s.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(int64(size-100), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(tail, want[size-100:]) {
		t.Errorf("tail of the large blob: %d bytes, %v", len(tail), err)
	}
	over := uuid.NewString()
	if _, err := s.Put(ctx, over, io.MultiReader(bytes.NewReader(want)), int64(size-1)); !errors.Is(err, blob.ErrTooLarge) {
		t.Errorf("large Put over maxBytes: err = %v, want ErrTooLarge", err)
	}
	wantMissing(t, s, over, "a large ErrTooLarge")
	if _, err := s.Put(ctx, over, io.MultiReader(bytes.NewReader(want), &FailingReader{N: 10}), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("large Put of a failing stream: err = %v, want io.ErrUnexpectedEOF", err)
	}
	wantMissing(t, s, over, "a large failed Put")
}
