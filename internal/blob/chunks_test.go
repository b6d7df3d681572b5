package blob

import (
	"bytes"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
)

// trickle yields its bytes a few KB at a time, as an HTTP body does.
type trickle struct{ b []byte }

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 16<<10)], t.b)
	t.b = t.b[n:]
	return n, nil
}

func TestReadChunks(t *testing.T) {
	t.Parallel()
	data := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	const limit = 2<<20 + 1
	for _, n := range []int{0, 1, s3FirstChunk - 1, s3FirstChunk, s3FirstChunk + 1, 1500000, limit - 1, limit, limit + 1, 3 << 20} {
		c, err := readChunks(&trickle{data[:n]}, limit)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		want := data[:min(n, limit)]
		if c.size != int64(len(want)) {
			t.Fatalf("%d bytes: size %d, want %d", n, c.size, len(want))
		}
		for range 2 { // read, then seek back and read again, as a retry does
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes: read back %d bytes (%v), want the %d written", n, len(got), err, len(want))
			}
			if _, err := c.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
		}
		if n > 10 {
			if _, err := c.Seek(-3, io.SeekEnd); err != nil {
				t.Fatal(err)
			}
			if got, _ := io.ReadAll(c); !bytes.Equal(got, want[len(want)-3:]) {
				t.Errorf("%d bytes: the last 3 after a seek = %x, want %x", n, got, want[len(want)-3:])
			}
		}
	}
}

// TestReadChunksMemory bounds the memory Put takes to hold a 1.5 MB
// output: at most about its size plus the last chunk's slack, not the
// doublings of a growing buffer (4 MiB allocated, and copied, for 1.5 MB).
func TestReadChunksMemory(t *testing.T) {
	data := make([]byte, 1500000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const runs = 10
	for range runs {
		if _, err := readChunks(&trickle{data}, s3PartSize+1); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 2200000 {
		t.Errorf("holding %d bytes allocated %d bytes, want at most 2,200,000", len(data), per)
	}
}
