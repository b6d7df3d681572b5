// Package blob keeps the bytes of files: uploads and task outputs. The
// records describing them live in the store; this package only knows opaque
// ids and bytes. Disk keeps them in a local directory, S3 in an
// S3-compatible object store; both pass the conformance suite in blobtest.
package blob

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors returned by every Store.
var (
	// ErrNotFound: no blob with that id.
	ErrNotFound = errors.New("blob: not found")
	// ErrTooLarge: the stream was longer than the allowed size; nothing was kept.
	ErrTooLarge = errors.New("blob: too large")
	// ErrInvalidID: the id is empty, too long, or holds characters that could
	// escape the store (path separators, "..", a leading dot).
	ErrInvalidID = errors.New("blob: invalid id")
)

// Store keeps blobs by id. Ids are opaque tokens chosen by the caller.
type Store interface {
	// Put writes r under id atomically: readers see the whole blob or none.
	// It returns ErrTooLarge, keeping nothing, when r yields more than
	// maxBytes bytes; maxBytes <= 0 means unlimited. An existing blob with
	// the same id is replaced.
	Put(ctx context.Context, id string, r io.Reader, maxBytes int64) (n int64, err error)
	// Open returns the blob for reading, or ErrNotFound.
	Open(ctx context.Context, id string) (File, error)
	// Delete removes the blob; a missing blob is not an error.
	Delete(ctx context.Context, id string) error
}

// Presigner is a Store whose blobs clients can fetch from the backend itself,
// with a URL that needs no credentials and expires (the S3 store's
// presigned GET).
type Presigner interface {
	Link(ctx context.Context, id string, o LinkOptions) (string, error)
}

// File is an open blob: enough for http.ServeContent, Range requests included.
type File interface {
	io.ReadSeekCloser
	// Size is the blob's length in bytes.
	Size() int64
	// ModTime is when the blob was written.
	ModTime() time.Time
}

// maxIDLen bounds ids; a uuid is 36 bytes.
const maxIDLen = 128

// ValidID reports whether id may name a blob: 1 to 128 bytes of ASCII letters,
// digits, '-', '_' and '.', not starting with '.' and without "..". Anything
// else could escape the store's directory or collide with its temp files.
func ValidID(id string) bool {
	if id == "" || len(id) > maxIDLen || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return false
		}
		if id[i] == '.' && i+1 < len(id) && id[i+1] == '.' {
			return false
		}
	}
	return true
}

func idByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return b == '-' || b == '_' || b == '.'
}
