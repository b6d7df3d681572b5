// Package seaweed runs SeaweedFS's `weed server` (master, volume, filer and
// S3 gateway in one process) as a child process: a real S3-compatible
// server on loopback ports of its own, with one signing identity, keeping
// its data in a directory the caller owns. The S3 store's tests (through
// package s3test) and the storage benchmark use it.
package seaweed

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
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Options configure Start.
type Options struct {
	// Bin is the weed binary. Required.
	Bin string
	// Dir holds the server's data and its identity file; the caller
	// creates and removes it. Required.
	Dir string
	// VolumeSizeLimitMB is the size of one volume, after which the server
	// grows another. Default 64.
	VolumeSizeLimitMB int
	// StartTimeout bounds the wait for the server to answer S3 requests.
	// Default 90s: it answers in about 2 s on an idle machine, and test
	// machines are not idle.
	StartTimeout time.Duration
}

// Server is a running SeaweedFS with one identity that may do anything.
type Server struct {
	// Endpoint is the S3 gateway's URL, http://127.0.0.1:<port>.
	Endpoint string
	// AccessKey and SecretKey are the identity's keys.
	AccessKey, SecretKey string
	// StartTime is how long the server took to answer S3 requests.
	StartTime time.Duration

	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncBuffer
}

// Start starts a server and waits until it answers S3 requests. The
// caller stops it with Stop.
func Start(o Options) (*Server, error) {
	if o.Bin == "" || o.Dir == "" {
		return nil, errors.New("seaweed: a binary and a directory are required")
	}
	if o.VolumeSizeLimitMB <= 0 {
		o.VolumeSizeLimitMB = 64
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 90 * time.Second
	}
	s := &Server{AccessKey: "weed-" + randHex(8), SecretKey: randHex(20), exited: make(chan struct{}), log: new(syncBuffer)}
	cfg := filepath.Join(o.Dir, "s3.json")
	if err := os.WriteFile(cfg, s.identities(), 0o600); err != nil {
		return nil, err
	}
	data := filepath.Join(o.Dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	s.Endpoint = "http://127.0.0.1:" + p(0)
	s.cmd = exec.Command(o.Bin, "server", //nolint:gosec // the caller's own binary
		"-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+p(1), "-master.port.grpc="+p(2), "-master.volumeSizeLimitMB="+strconv.Itoa(o.VolumeSizeLimitMB),
		"-volume.port="+p(3), "-volume.port.grpc="+p(4), "-volume.max=0",
		"-filer.port="+p(5), "-filer.port.grpc="+p(6),
		"-s3", "-s3.port="+p(0), "-s3.port.grpc="+p(7), "-s3.config="+cfg,
	)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = procAttr()
	begin := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("seaweed: start %s: %w", o.Bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(o.StartTimeout); err != nil {
		s.Stop()
		return nil, fmt.Errorf("seaweed: %w; its output:\n%s", err, s.Output())
	}
	s.StartTime = time.Since(begin)
	return s, nil
}

// identities is the -s3.config document: one identity with every right.
func (s *Server) identities() []byte {
	b, _ := json.Marshal(map[string]any{"identities": []any{map[string]any{
		"name":        "admin",
		"credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}})
	return b
}

// waitReady creates and deletes a bucket until the server lets it, or
// limit passes, or the process exits.
func (s *Server) waitReady(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c := s.Client()
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
			return fmt.Errorf("weed did not answer S3 requests within %s: %w", limit, last)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// Client is an S3 client of the server, signing as its identity.
func (s *Server) Client() *minio.Client {
	c, err := minio.New(s.Endpoint[len("http://"):], &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1",
	})
	if err != nil {
		panic(err) // only a malformed endpoint, which Start never makes
	}
	return c
}

// MakeBucket creates a bucket with a fresh name, prefix followed by random
// hex, and returns the name.
func (s *Server) MakeBucket(ctx context.Context, prefix string) (string, error) {
	name := prefix + randHex(8)
	if err := s.Client().MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		return "", fmt.Errorf("seaweed: make bucket: %w", err)
	}
	return name, nil
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop ends the server: SIGTERM, then SIGKILL after 10 s.
func (s *Server) Stop() {
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

// Output is the end of what the server printed.
func (s *Server) Output() string { return s.log.tail(4000) }

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
