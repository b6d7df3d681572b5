// Package s3test starts a real S3-compatible server for tests: SeaweedFS's
// `weed server` (master, volume, filer and S3 gateway in one process), on
// loopback ports of its own, with one signing identity, in a temporary
// directory removed when the test ends.
//
// The binary is $TEST_SEAWEEDFS_BIN, else `weed` on the PATH; .ci/run
// builds it with .ci/install-seaweedfs. Without it a test skips on a
// developer's machine and fails in CI (CI set), like the Redis tests.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/comfyfleet/comfyfleet/internal/blob"
)

// EnvBin names the weed binary to run.
const EnvBin = "TEST_SEAWEEDFS_BIN"

// startTimeout bounds the wait for the server to answer S3 requests. It
// answers in about 2 s on an idle machine; CI machines are not idle.
const startTimeout = 90 * time.Second

// Server is a running SeaweedFS with one identity that may do anything.
type Server struct {
	// Endpoint is the S3 gateway's URL, http://127.0.0.1:<port>.
	Endpoint string
	// AccessKey and SecretKey are the identity's keys.
	AccessKey, SecretKey string
	// StartTime is how long the server took to answer S3 requests.
	StartTime time.Duration

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncBuffer
}

// Bin returns the weed binary, or skips t (fails it in CI) when there is none.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		if p, err := exec.LookPath("weed"); err == nil {
			bin = p
		}
	}
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
	bin := Bin(t)
	s, err := start(bin, t.TempDir())
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

func start(bin, dir string) (*Server, error) {
	s := &Server{dir: dir, AccessKey: "test-" + randHex(8), SecretKey: randHex(20), exited: make(chan struct{}), log: new(syncBuffer)}
	cfg := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfg, s.identities(), 0o600); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	s.Endpoint = "http://127.0.0.1:" + p(0)
	s.cmd = exec.Command(bin, "server", //nolint:gosec // the test's own binary
		"-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+p(1), "-master.port.grpc="+p(2), "-master.volumeSizeLimitMB=64",
		"-volume.port="+p(3), "-volume.port.grpc="+p(4), "-volume.max=0",
		"-filer.port="+p(5), "-filer.port.grpc="+p(6),
		"-s3", "-s3.port="+p(0), "-s3.port.grpc="+p(7), "-s3.config="+cfg,
	)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = procAttr()
	begin := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w; its output:\n%s", err, s.output())
	}
	s.StartTime = time.Since(begin)
	return s, nil
}

// identities is the -s3.config document: one identity with every right.
func (s *Server) identities() []byte {
	b, _ := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name":        "test",
		"credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}})
	return b
}

// waitReady creates and deletes a bucket until the server lets it, or
// startTimeout passes, or the process exits.
func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c := s.client()
	probe := "ready-" + randHex(4)
	wait := 50 * time.Millisecond
	var last error
	for {
		err := c.MakeBucket(ctx, probe, minio.MakeBucketOptions{})
		if err == nil {
			return c.RemoveBucket(ctx, probe)
		}
		last = err
		select {
		case <-s.exited:
			return errors.New("weed exited before it answered")
		case <-ctx.Done():
			return fmt.Errorf("weed did not answer S3 requests within %s: %w", startTimeout, last)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func (s *Server) client() *minio.Client {
	c, err := minio.New(s.Endpoint[len("http://"):], &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1",
	})
	if err != nil {
		panic(err) // only a malformed endpoint, which start never makes
	}
	return c
}

// Bucket creates a bucket with a fresh name and returns the name.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	name := "test-" + randHex(8)
	if err := s.client().MakeBucket(t.Context(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("s3test: make bucket: %v", err)
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
	for o := range s.client().ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("s3test: list %s: %v", bucket, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// stop ends the server: SIGTERM, then SIGKILL after 10 s.
func (s *Server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *Server) output() string { return s.log.tail(4000) }

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer keeps the process's output, written and read concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// tail is the last n bytes written.
func (w *syncBuffer) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.b.Bytes()
	return string(b[max(0, len(b)-n):])
}
