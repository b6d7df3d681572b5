package comfy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorded is one HTTP exchange from testdata/http_responses.json, taken
// from the recordings in internal/comfysim/testdata/traces (see testdata/README.md).
type recorded struct {
	Method      string          `json:"method"`
	Path        string          `json:"path"`
	Status      int             `json:"status"`
	ContentType string          `json:"content_type"`
	RequestJSON json.RawMessage `json:"request_json"`
	Body        string          `json:"body"`
}

var (
	recordedOnce sync.Once
	recordedAll  map[string]recorded
)

// rec returns the recorded exchange key ("<scenario>/<label>").
func rec(t testing.TB, key string) recorded {
	t.Helper()
	recordedOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join("testdata", "http_responses.json"))
		if err == nil {
			err = json.Unmarshal(b, &recordedAll)
		}
		if err != nil {
			panic(err)
		}
	})
	r, ok := recordedAll[key]
	if !ok {
		t.Fatalf("no recorded exchange %q", key)
	}
	return r
}

// write answers with the recorded status, content type and body.
func (r recorded) write(w http.ResponseWriter) {
	if r.ContentType != "" {
		w.Header().Set("Content-Type", r.ContentType)
	}
	w.WriteHeader(r.Status)
	_, _ = w.Write([]byte(r.Body))
}

// serve starts a server whose handler h is wrapped to fail the test on a
// request for an unexpected path.
func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := New(srv.URL, "gw-test", srv.Client())
	return c
}

// serveRecorded answers method+path with the recorded exchange and 404s otherwise.
func serveRecorded(t *testing.T, r recorded) *Client {
	t.Helper()
	return serve(t, func(w http.ResponseWriter, req *http.Request) {
		if req.Method != r.Method || req.URL.RequestURI() != r.Path {
			t.Errorf("got request %s %s, want %s %s", req.Method, req.URL.RequestURI(), r.Method, r.Path)
			http.NotFound(w, req)
			return
		}
		r.write(w)
	})
}

// frame is one recorded WebSocket frame from testdata/*.ws.jsonl.
type frame struct {
	WS        string          `json:"ws"`
	Frame     string          `json:"frame"` // "text" or "binary"
	JSON      json.RawMessage `json:"json"`
	Length    int             `json:"length"`
	HeadHex   string          `json:"head_hex"`
	EventType uint32          `json:"event_type"`
	Metadata  json.RawMessage `json:"metadata"`
}

// loadFrames reads the recorded frames of a scenario, keeping those of socket
// ws ("" keeps all).
func loadFrames(t testing.TB, scenario, ws string) []frame {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", scenario+".ws.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var frames []frame
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var fr frame
		if err := json.Unmarshal(sc.Bytes(), &fr); err != nil {
			t.Fatal(err)
		}
		if ws == "" || fr.WS == ws {
			frames = append(frames, fr)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return frames
}

// payload rebuilds the frame's bytes. A binary frame gets its recorded header
// (type 4: the recorded metadata) padded with zeros to its recorded length.
func (f frame) payload(t testing.TB) (websocket.MessageType, []byte) {
	t.Helper()
	if f.Frame == "text" {
		return websocket.MessageText, f.JSON
	}
	var b []byte
	if f.EventType == BinaryPreviewImageWithMetadata {
		b = binary.BigEndian.AppendUint32(b, f.EventType)
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.Metadata)))
		b = append(b, f.Metadata...)
	} else {
		head, err := hex.DecodeString(f.HeadHex)
		if err != nil {
			t.Fatal(err)
		}
		b = head
	}
	if len(b) < f.Length {
		b = append(b, make([]byte, f.Length-len(b))...)
	}
	return websocket.MessageBinary, b
}

// wsServer is a /ws test server. For each accepted connection it calls
// handle (in the handler's goroutine) and records the handshake's headers.
type wsServer struct {
	t      *testing.T
	srv    *httptest.Server
	handle func(ctx context.Context, n int, c *websocket.Conn)

	// mu guards the fields below.
	mu       sync.Mutex
	conns    int
	origins  []string
	clientID []string
}

func newWSServer(t *testing.T, handle func(ctx context.Context, n int, c *websocket.Conn)) *wsServer {
	t.Helper()
	s := &wsServer{t: t, handle: handle}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *wsServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/ws" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.conns++
	n := s.conns
	s.origins = append(s.origins, r.Header.Get("Origin"))
	s.clientID = append(s.clientID, r.URL.Query().Get("clientId"))
	s.mu.Unlock()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.t.Errorf("accept: %v", err)
		return
	}
	defer c.CloseNow()
	s.handle(r.Context(), n, c)
}

// checkHandshakes asserts that every handshake carried clientId=want and no Origin.
func (s *wsServer) checkHandshakes(t *testing.T, want string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == 0 {
		t.Fatal("no WebSocket connection was made")
	}
	for i := range s.conns {
		if s.origins[i] != "" {
			t.Errorf("connection %d sent Origin %q, want none", i+1, s.origins[i])
		}
		if s.clientID[i] != want {
			t.Errorf("connection %d clientId = %q, want %q", i+1, s.clientID[i], want)
		}
	}
}

// replay writes frames to c in order.
func replay(ctx context.Context, t testing.TB, c *websocket.Conn, frames []frame) {
	for _, f := range frames {
		typ, b := f.payload(t)
		if err := c.Write(ctx, typ, b); err != nil {
			t.Errorf("replay write: %v", err)
			return
		}
	}
}

// drain reads from c until the peer closes, answering pings and the close handshake.
func drain(ctx context.Context, c *websocket.Conn) {
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
	}
}

// recv waits for a value from ch, failing the test after 10 s.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("bad JSON %q: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("bad JSON %q: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}
