package comfysim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on the simulator in tests.
const waitTimeout = 10 * time.Second

// startSim starts an instance on a free port and closes it at cleanup.
func startSim(t testing.TB, opts Options) *Sim {
	t.Helper()
	s := New(opts)
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// httpResp is a response read in full.
type httpResp struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body in Python layout semantics (ordered, int vs float).
func (r httpResp) json(t testing.TB) any {
	t.Helper()
	v, err := parsePy(r.body)
	if err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return v
}

var testClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func do(t testing.TB, method, url, ctype string, body []byte) httpResp {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return httpResp{status: res.StatusCode, header: res.Header, body: b}
}

func get(t testing.TB, url string) httpResp { return do(t, "GET", url, "", nil) }

func postJSON(t testing.TB, url string, body any) httpResp {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return do(t, "POST", url, "application/json", b)
}

// submit posts a prompt for clientID and returns the prompt_id.
func submit(t testing.TB, s *Sim, prompt string, clientID string) string {
	t.Helper()
	body := `{"prompt": ` + prompt + `, "client_id": "` + clientID + `"}`
	r := postJSON(t, s.URL()+"/prompt", body)
	if r.status != 200 {
		t.Fatalf("POST /prompt: status %d: %s", r.status, r.body)
	}
	id, _ := r.json(t).(*obj).str("prompt_id")
	return id
}

// wsFrameT is a frame a test client received.
type wsFrameT struct {
	binary bool
	data   []byte
	typ    string // "type" of a text frame
	msg    *obj   // the whole text frame
}

func (f wsFrameT) field(k string) any {
	if f.msg == nil {
		return nil
	}
	return f.msg.sub("data").at(k)
}

// wsClient is a WebSocket test client that buffers every frame.
type wsClient struct {
	t      testing.TB
	c      *websocket.Conn
	frames chan wsFrameT
	done   chan struct{}
	got    []wsFrameT
}

func dialWS(t testing.TB, s *Sim, query string) *wsClient {
	t.Helper()
	url := strings.Replace(s.URL(), "http://", "ws://", 1) + "/ws" + query
	c, _, err := websocket.Dial(ctxFor(t), url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(64 << 20)
	w := &wsClient{t: t, c: c, frames: make(chan wsFrameT, 1<<16), done: make(chan struct{})}
	go w.read()
	t.Cleanup(w.close)
	return w
}

func (w *wsClient) read() {
	defer close(w.done)
	defer close(w.frames)
	for {
		typ, data, err := w.c.Read(context.Background())
		if err != nil {
			return
		}
		f := wsFrameT{binary: typ == websocket.MessageBinary, data: data}
		if !f.binary {
			if v, err := parsePy(data); err == nil {
				f.msg, _ = v.(*obj)
				f.typ, _ = f.msg.str("type")
			}
		}
		w.frames <- f
	}
}

func (w *wsClient) close() {
	w.c.CloseNow()
	<-w.done
}

func (w *wsClient) send(t testing.TB, text string) {
	t.Helper()
	if err := w.c.Write(ctxFor(t), websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("ws write: %v", err)
	}
}

// next returns the next frame, or ok=false when the socket closed.
func (w *wsClient) next(t testing.TB) (wsFrameT, bool) {
	t.Helper()
	select {
	case f, ok := <-w.frames:
		if ok {
			w.got = append(w.got, f)
		}
		return f, ok
	case <-time.After(waitTimeout):
		t.Fatalf("no WebSocket frame within %v; got so far: %v", waitTimeout, frameTypes(w.got))
		return wsFrameT{}, false
	}
}

// until reads frames up to and including the first that matches.
func (w *wsClient) until(t testing.TB, match func(wsFrameT) bool) []wsFrameT {
	t.Helper()
	var out []wsFrameT
	for {
		f, ok := w.next(t)
		if !ok {
			t.Fatalf("socket closed before the expected frame; got %v", frameTypes(out))
		}
		out = append(out, f)
		if match(f) {
			return out
		}
	}
}

// untilDone reads frames up to executing{node: null} for promptID.
func (w *wsClient) untilDone(t testing.TB, promptID string) []wsFrameT {
	t.Helper()
	return w.until(t, func(f wsFrameT) bool {
		return f.typ == "executing" && f.msg.sub("data").has("node") && f.field("node") == nil && f.field("prompt_id") == promptID
	})
}

// waitClosed reads until the server closes the socket.
func (w *wsClient) waitClosed(t testing.TB) []wsFrameT {
	t.Helper()
	var out []wsFrameT
	for {
		f, ok := w.next(t)
		if !ok {
			return out
		}
		out = append(out, f)
	}
}

func frameTypes(fs []wsFrameT) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.typ
		if f.binary {
			out[i] = "<binary>"
		}
	}
	return out
}

// typesOf lists frame types, dropping the kinds named in skip.
func typesOf(fs []wsFrameT, skip ...string) []string {
	var out []string
outer:
	for _, t := range frameTypes(fs) {
		for _, s := range skip {
			if t == s {
				continue outer
			}
		}
		out = append(out, t)
	}
	return out
}

// trivialPrompt is EmptyImage -> SaveImage.
func trivialPrompt(color int, prefix string) string {
	return `{"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": ` + itoa(color) + `}},` +
		` "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "` + prefix + `"}}}`
}
