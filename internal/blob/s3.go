package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options configures NewS3.
type S3Options struct {
	// Endpoint is the service's URL: http:// or https://, host and port,
	// no path ("https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:8333").
	Endpoint string
	// Bucket holds the blobs; it must exist.
	Bucket string
	// Prefix is put before every id to make the object's key ("fleet/"
	// keeps blob "ab12" at "fleet/ab12"). Empty: ids are the keys.
	Prefix string
	// Region signs requests. Default "us-east-1", which S3-compatible
	// services accept whatever their own setting.
	Region string
	// Credentials sign requests; see S3Credentials. Required.
	Credentials *credentials.Credentials
	// Transport carries the requests. Default: a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
}

// S3 is a Store on an S3-compatible object store (Amazon S3, MinIO,
// SeaweedFS, Ceph, R2...). Blob id "ab12" is the object <prefix>ab12.
// A PUT makes an object appear whole or not at all, so Put is atomic as
// the Store requires; a blob larger than s3PartSize is sent as a multipart
// upload, which is aborted (leaving nothing) when the stream fails or
// passes maxBytes. S3 is safe for concurrent use.
type S3 struct {
	client *minio.Client
	core   minio.Core
	bucket string
	prefix string
}

var _ Store = (*S3)(nil)

// s3PartSize is the largest blob sent in one PUT, and the part size of the
// multipart uploads of larger ones. Put buffers up to this much of a
// stream in memory to learn whether one PUT will do.
const s3PartSize = 16 << 20

// NewS3 returns an S3 store, after checking that the bucket exists and the
// credentials may read it.
func NewS3(ctx context.Context, o S3Options) (*S3, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("blob: s3 endpoint %q: want http(s)://host[:port] without a path", o.Endpoint)
	}
	if o.Bucket == "" {
		return nil, errors.New("blob: s3 bucket is empty")
	}
	if o.Credentials == nil {
		return nil, errors.New("blob: s3 credentials are missing")
	}
	region := o.Region
	if region == "" {
		region = "us-east-1"
	}
	tr := o.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64 // the default 2 makes concurrent copies reconnect
		tr = t
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds: o.Credentials, Secure: u.Scheme == "https", Region: region, Transport: tr,
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("blob: s3 client: %w", err)
	}
	s := &S3{client: c, core: minio.Core{Client: c}, bucket: o.Bucket, prefix: o.Prefix}
	ok, err := c.BucketExists(ctx, o.Bucket)
	if err != nil {
		return nil, fmt.Errorf("blob: s3 bucket %q at %s: %w", o.Bucket, o.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("blob: s3 bucket %q does not exist at %s", o.Bucket, o.Endpoint)
	}
	return s, nil
}

// S3Credentials returns the credentials to sign requests with. With file
// set, they come from that shared credentials file (the AWS INI format:
// aws_access_key_id, aws_secret_access_key, aws_session_token) and its
// profile ("" is $AWS_PROFILE, else "default"); otherwise from the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
// else from the default shared credentials file (~/.aws/credentials or
// $AWS_SHARED_CREDENTIALS_FILE). It fails when none of them has a key, so
// a missing secret is an error at start-up, not anonymous requests.
func S3Credentials(file, profile string) (*credentials.Credentials, error) {
	var c *credentials.Credentials
	where := "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a shared credentials file"
	if file != "" {
		c = credentials.NewFileAWSCredentials(file, profile)
		where = "the credentials file " + file
		if profile != "" {
			where += " (profile " + profile + ")"
		}
	} else {
		c = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{Profile: profile},
		})
	}
	v, err := c.GetWithContext(nil)
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		if err == nil {
			err = errors.New("no access key")
		}
		return nil, fmt.Errorf("blob: s3 credentials from %s: %w", where, err)
	}
	return c, nil
}

// key is the object key of a blob.
func (s *S3) key(id string) (string, error) {
	if !ValidID(id) {
		return "", ErrInvalidID
	}
	return s.prefix + id, nil
}

// Put implements Store. A blob of at most s3PartSize bytes is one PUT;
// a larger one a multipart upload.
func (s *S3) Put(ctx context.Context, id string, r io.Reader, maxBytes int64) (int64, error) {
	key, err := s.key(id)
	if err != nil {
		return 0, err
	}
	src := &limitedReader{ctx: ctx, r: r, max: maxBytes}
	head, err := readChunks(src, s3PartSize+1)
	if err != nil {
		return 0, fmt.Errorf("blob: put %s: %w", id, err)
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: s3PartSize}
	var body io.Reader = head
	size := head.size
	if size > s3PartSize {
		body, size = io.MultiReader(body, src), -1 // unknown length: multipart
	}
	info, err := s.client.PutObject(ctx, s.bucket, key, body, size, opts)
	if err != nil {
		if src.err != nil {
			err = src.err // the stream's own failure, not the service's
		}
		return 0, fmt.Errorf("blob: put %s: %w", id, err)
	}
	return info.Size, nil
}

// Put reads a blob's start into chunks that double from s3FirstChunk up to
// s3MaxChunk and are never copied, rather than into a growing buffer
// (bytes.Buffer), which allocates, zeroes and copies the bytes again at each
// doubling: for outputs of a few MB that was a quarter of the gateway's CPU.
// The chunks are not pooled: the HTTP transport may still read a request's
// body after the request returned.
const (
	s3FirstChunk = 64 << 10
	s3MaxChunk   = 1 << 20
)

// chunks is the start of a stream held in memory, read back as an
// io.ReadSeeker (the client seeks to the start to retry a request).
type chunks struct {
	// parts are the chunks, each filled but maybe the last.
	parts [][]byte
	size  int64
	off   int64
}

// readChunks reads r until EOF or limit bytes.
func readChunks(r io.Reader, limit int64) (*chunks, error) {
	c := &chunks{}
	next := int64(s3FirstChunk)
	for c.size < limit {
		buf := make([]byte, min(next, limit-c.size))
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			c.parts = append(c.parts, buf[:n])
			c.size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return c, nil
		}
		if err != nil {
			return c, err
		}
		next = min(2*next, s3MaxChunk)
	}
	return c, nil
}

func (c *chunks) Read(p []byte) (int, error) {
	at := c.off
	for _, part := range c.parts {
		if at < int64(len(part)) {
			n := copy(p, part[at:])
			c.off += int64(n)
			return n, nil
		}
		at -= int64(len(part))
	}
	return 0, io.EOF
}

func (c *chunks) Seek(offset int64, whence int) (int64, error) {
	abs := offset
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		abs += c.off
	case io.SeekEnd:
		abs += c.size
	default:
		return 0, fmt.Errorf("blob: seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("blob: seek: negative position %d", abs)
	}
	c.off = abs
	return abs, nil
}

// limitedReader stops a stream once ctx is done, and fails it with
// ErrTooLarge past max bytes (max <= 0: no limit). It keeps its error.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	max int64
	n   int64
	err error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if err := l.ctx.Err(); err != nil {
		l.err = err
		return 0, err
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.max > 0 && l.n > l.max {
		l.err = ErrTooLarge
		return 0, l.err
	}
	if err != nil && err != io.EOF {
		// Wrapped: the multipart upload takes a bare io.ErrUnexpectedEOF
		// for a short last part, and would complete a cut stream.
		l.err = fmt.Errorf("read: %w", err)
		return n, l.err
	}
	return n, err
}

// Open implements Store. It starts the GET of the whole object at once,
// whose answer gives the size and date: a download takes one request, and
// a failing one fails Open, before an HTTP handler sent any header. A Read
// after a Seek elsewhere asks for the rest of the object from there (an
// http.ServeContent of a Range reads from the range's start).
func (s *S3) Open(ctx context.Context, id string) (File, error) {
	key, err := s.key(id)
	if err != nil {
		return nil, err
	}
	body, info, _, err := s.core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if isNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", id, err)
	}
	if info.Size < 0 { // no Content-Length: ask for it
		_ = body.Close()
		if info, err = s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{}); err != nil {
			if isNotFound(err) {
				return nil, ErrNotFound
			}
			return nil, fmt.Errorf("blob: open %s: %w", id, err)
		}
		body = nil
	}
	return &s3File{ctx: ctx, s: s, id: id, key: key, size: info.Size, mod: info.LastModified, etag: info.ETag, body: body}, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, id string) error {
	key, err := s.key(id)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("blob: delete %s: %w", id, err)
	}
	return nil
}

// LinkOptions are the response headers a signed URL makes the service send.
type LinkOptions struct {
	// Filename is sent as Content-Disposition: inline; filename="...".
	Filename string
	// ContentType is sent as Content-Type.
	ContentType string
	// TTL is how long the URL works.
	TTL time.Duration
}

// Link returns a URL that fetches the blob from the service itself for
// o.TTL, without credentials: a presigned GET. It makes no request; a
// missing blob is the service's 404.
func (s *S3) Link(ctx context.Context, id string, o LinkOptions) (string, error) {
	key, err := s.key(id)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	if o.Filename != "" {
		q.Set("response-content-disposition", contentDisposition(o.Filename))
	}
	if o.ContentType != "" {
		q.Set("response-content-type", o.ContentType)
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, key, o.TTL, q)
	if err != nil {
		return "", fmt.Errorf("blob: link %s: %w", id, err)
	}
	return u.String(), nil
}

// contentDisposition is an inline Content-Disposition naming the file,
// with its UTF-8 form (RFC 6266) when the name is not plain ASCII.
func contentDisposition(name string) string {
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, name)
	v := `inline; filename="` + ascii + `"`
	if ascii != name {
		v += "; filename*=UTF-8''" + url.PathEscape(name)
	}
	return v
}

// isNotFound reports whether err is the service's "no such key" (or bucket).
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == minio.NoSuchKey
}

// s3File is an open object. Read streams from the object's current
// offset with one GET, which lasts until a Read finds that Seek moved
// elsewhere; every GET after Open's requires the ETag Open saw, so a blob
// replaced meanwhile fails the read instead of mixing two versions.
type s3File struct {
	ctx  context.Context
	s    *S3
	id   string
	key  string
	size int64
	mod  time.Time
	etag string

	off int64
	// body is the open GET, at bodyOff of the object; nil when none is.
	body    io.ReadCloser
	bodyOff int64
}

func (f *s3File) Size() int64        { return f.size }
func (f *s3File) ModTime() time.Time { return f.mod }

func (f *s3File) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.body != nil && f.bodyOff != f.off {
		_ = f.body.Close()
		f.body = nil
	}
	if f.body == nil {
		var o minio.GetObjectOptions
		if f.etag != "" {
			_ = o.SetMatchETag(f.etag)
		}
		if f.off > 0 {
			_ = o.SetRange(f.off, 0)
		}
		body, _, _, err := f.s.core.GetObject(f.ctx, f.s.bucket, f.key, o)
		if err != nil {
			if isNotFound(err) {
				err = ErrNotFound
			}
			return 0, fmt.Errorf("blob: read %s: %w", f.id, err)
		}
		f.body, f.bodyOff = body, f.off
	}
	n, err := f.body.Read(p)
	f.off += int64(n)
	f.bodyOff += int64(n)
	if err == io.EOF && f.off < f.size {
		err = fmt.Errorf("blob: read %s: %w", f.id, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (f *s3File) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.off + offset
	case io.SeekEnd:
		abs = f.size + offset
	default:
		return 0, fmt.Errorf("blob: seek %s: invalid whence %d", f.id, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("blob: seek %s: negative position %d", f.id, abs)
	}
	f.off = abs // the next Read opens another GET if it must
	return abs, nil
}

func (f *s3File) Close() error {
	if f.body == nil {
		return nil
	}
	err := f.body.Close()
	f.body = nil
	return err
}
