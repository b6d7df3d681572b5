// Package s3test starts a real S3-compatible server for tests: SeaweedFS
// (package seaweed), on loopback ports of its own, with one signing
// identity, in a temporary directory removed when the test ends.
//
// The binary is $TEST_SEAWEEDFS_BIN, else `weed` on the PATH; .ci/run
// builds it with .ci/install-seaweedfs. Without it a test skips on a
// developer's machine and fails in CI (CI set), like the Redis tests.
package s3test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/blob/seaweed"
)

// EnvBin names the weed binary to run.
const EnvBin = "TEST_SEAWEEDFS_BIN"

// Server is a running SeaweedFS with one identity that may do anything:
// its Endpoint, AccessKey, SecretKey and StartTime are seaweed.Server's.
type Server struct {
	*seaweed.Server
}

// LookBin returns the weed binary: $TEST_SEAWEEDFS_BIN, else `weed` on
// the PATH, else "".
func LookBin() string {
	if bin := os.Getenv(EnvBin); bin != "" {
		return bin
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p
	}
	return ""
}

// Bin returns the weed binary, or skips t (fails it in CI) when there is none.
func Bin(t testing.TB) string {
	t.Helper()
	bin := LookBin()
	if bin == "" {
		msg := "no S3 server: set " + EnvBin + " to a SeaweedFS weed binary (.ci/install-seaweedfs builds one)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// Start starts a server for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := seaweed.Start(seaweed.Options{Bin: Bin(t), Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(s.Stop)
	return &Server{s}
}

// Bucket creates a bucket with a fresh name and returns the name.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	name, err := s.MakeBucket(t.Context(), "test-")
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return name
}

// CredentialsFile writes the identity's keys as an AWS shared credentials
// file (profile "default") and returns its path.
func (s *Server) CredentialsFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "credentials")
	body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s.AccessKey, s.SecretKey)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Store returns a blob.S3 on a fresh bucket of s, with the given key prefix.
func (s *Server) Store(t testing.TB, prefix string) *blob.S3 {
	t.Helper()
	st, err := blob.NewS3(t.Context(), blob.S3Options{
		Endpoint: s.Endpoint, Bucket: s.Bucket(t), Prefix: prefix,
		Credentials: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
	})
	if err != nil {
		t.Fatalf("s3test: NewS3: %v", err)
	}
	return st
}

// Objects lists the keys in bucket under prefix.
func (s *Server) Objects(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for o := range s.Client().ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("s3test: list %s: %v", bucket, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}
