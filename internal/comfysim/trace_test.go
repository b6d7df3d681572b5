package comfysim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The replay harness: every action a trace recorded (HTTP requests,
// WebSocket connects, sends and closes) is performed against a fresh
// simulator in the recorded order; before each action the harness waits
// until every socket has received as many frames as the real client had at
// that moment. Responses and frames are then compared with shapeDiff.

type traceFile struct {
	Scenario string       `json:"scenario"`
	Events   []traceEvent `json:"events"`
}

type traceEvent struct {
	Kind            string            `json:"kind"`
	Label           string            `json:"label"`
	WS              string            `json:"ws"`
	TMs             float64           `json:"t_ms"`
	TSend           float64           `json:"t_send_ms"`
	TRecv           float64           `json:"t_recv_ms"`
	Method          string            `json:"method"`
	Path            string            `json:"path"`
	URL             string            `json:"url"`
	RequestJSON     json.RawMessage   `json:"request_json"`
	RequestBodyDesc json.RawMessage   `json:"request_body_desc"`
	Status          int               `json:"status"`
	Headers         map[string]string `json:"response_headers"`
	Response        json.RawMessage   `json:"response"`
	Summary         json.RawMessage   `json:"response_summary"`
	Frame           string            `json:"frame"`
	JSON            json.RawMessage   `json:"json"`
	EventType       int               `json:"event_type"`
	ImageFormat     string            `json:"image_format"`
	Metadata        json.RawMessage   `json:"metadata"`
	Image           *traceImage       `json:"image"`
	Seq             int               `json:"seq"`
}

type traceImage struct {
	IsPNG  bool `json:"is_png"`
	IsJPEG bool `json:"is_jpeg"`
	Width  int  `json:"width"`
	Height int  `json:"height"`
}

type traceResponse struct {
	JSON   json.RawMessage `json:"json"`
	Text   *string         `json:"text"`
	Binary *traceImage     `json:"binary"`
	Base64 string          `json:"base64"`
	Empty  bool            `json:"empty"`
}

func (e traceEvent) at() float64 {
	if e.Kind == "http" {
		return e.TSend
	}
	return e.TMs
}

// before is the moment whose frames must have arrived before the action is
// replayed. A GET changes nothing, so every frame that reached the real
// client before the GET's answer was sent before the server read its state.
func (e traceEvent) before() float64 {
	if e.Kind == "http" && e.Method == "GET" {
		return e.TRecv
	}
	return e.at()
}

func loadTrace(t *testing.T, name string) traceFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "traces", name))
	if err != nil {
		t.Fatal(err)
	}
	var tf traceFile
	if err := json.Unmarshal(b, &tf); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tf
}

// replayOpts tunes a replay to one scenario.
type replayOpts struct {
	spec shapeSpec
	// statusApart compares each socket's status frames and its other frames
	// as two sequences: status broadcasts caused by concurrent requests
	// interleave with execution frames (and count pending prompts) by
	// timing, not by protocol.
	statusApart bool
	// truncated means the trace stops mid-scenario (s06 keeps 60 events).
	truncated bool
	// exactLength lists paths whose Content-Length must match even though
	// the trace only summarised the body.
	exactLength map[string]bool
	// files supplies upload contents by filename and size.
	files map[string][]byte
}

type replayer struct {
	t       *testing.T
	s       *Sim
	o       replayOpts
	events  []traceEvent
	sockets map[string]*wsClient
	closed  map[string]bool
	subst   map[string]string // trace value -> simulator value (ids, temp names)
}

func replay(t *testing.T, s *Sim, tf traceFile, o replayOpts) {
	t.Helper()
	r := &replayer{t: t, s: s, o: o, events: tf.Events, sockets: map[string]*wsClient{}, closed: map[string]bool{}, subst: map[string]string{}}
	r.o.spec = defaultShape.merge(o.spec)
	actions := make([]traceEvent, 0, len(tf.Events))
	for _, e := range tf.Events {
		if e.Kind != "ws_recv" {
			actions = append(actions, e)
		}
	}
	sort.SliceStable(actions, func(i, j int) bool { return actions[i].at() < actions[j].at() })
	for _, a := range actions {
		r.barrier(a.before())
		r.act(a)
	}
	r.barrier(1e18)
	for name := range r.sockets {
		r.compareFrames(name)
	}
}

// recorded returns the frames socket name received in the trace. For a
// truncated trace it stops at the last completed prompt (executing null):
// later frames belong to requests the trace no longer holds.
func (r *replayer) recorded(name string) []traceEvent {
	var out []traceEvent
	last := -1
	for _, e := range r.events {
		if e.Kind != "ws_recv" || e.WS != name {
			continue
		}
		out = append(out, e)
		if e.Frame == "text" && strings.Contains(string(e.JSON), `"node": null`) {
			last = len(out)
		}
	}
	if r.o.truncated && last >= 0 {
		out = out[:last]
	}
	return out
}

// barrier waits until each socket holds the frames received before t.
func (r *replayer) barrier(t float64) {
	for name, c := range r.sockets {
		n := 0
		for _, e := range r.recorded(name) {
			if e.TMs < t {
				n++
			}
		}
		for len(c.got) < n {
			if _, ok := c.next(r.t); !ok && !r.closed[name] {
				r.t.Fatalf("%s closed after %d frames, the trace had %d before t=%.1fms", name, len(c.got), n, t)
			} else if !ok {
				break
			}
		}
	}
}

func (r *replayer) act(e traceEvent) {
	switch e.Kind {
	case "ws_connect":
		query := ""
		if i := strings.IndexByte(e.URL, '?'); i >= 0 {
			query = e.URL[i:]
		}
		r.sockets[e.WS] = dialWS(r.t, r.s, query)
	case "ws_send":
		c := r.sockets[e.WS]
		c.send(r.t, string(e.JSON))
		// The real server handled the message on the event loop that also
		// served the next request; wait for the reply so the replay does too.
		if strings.Contains(string(e.JSON), `"feature_flags"`) {
			c.until(r.t, func(f wsFrameT) bool { return f.typ == "feature_flags" })
		}
	case "ws_closed":
		r.sockets[e.WS].close()
		r.closed[e.WS] = true
	case "http":
		r.http(e)
	}
}

func (r *replayer) substitute(s string) string {
	for from, to := range r.subst {
		s = strings.ReplaceAll(s, from, to)
	}
	return s
}

func (r *replayer) http(e traceEvent) {
	t := r.t
	path := r.substitute(e.Path)
	var res httpResp
	switch {
	case len(e.RequestJSON) > 0 && string(e.RequestJSON) != "null":
		res = do(t, e.Method, r.s.URL()+path, "application/json", []byte(r.substitute(string(e.RequestJSON))))
	case len(e.RequestBodyDesc) > 0 && string(e.RequestBodyDesc) != "null":
		ctype, body := r.describedBody(e.RequestBodyDesc)
		res = do(t, e.Method, r.s.URL()+path, ctype, body)
	default:
		res = do(t, e.Method, r.s.URL()+path, "", nil)
	}
	what := e.Method + " " + e.Path
	if e.Label != "" {
		what += " (" + e.Label + ")"
	}
	if res.status != e.Status {
		t.Errorf("%s: status %d, want %d; body %.300s", what, res.status, e.Status, res.body)
		return
	}
	if ct := e.Headers["Content-Type"]; ct != "" && res.header.Get("Content-Type") != ct {
		t.Errorf("%s: Content-Type %q, want %q", what, res.header.Get("Content-Type"), ct)
	}
	if cd := e.Headers["Content-Disposition"]; cd != "" && res.header.Get("Content-Disposition") != r.substitute(cd) {
		t.Errorf("%s: Content-Disposition %q, want %q", what, res.header.Get("Content-Disposition"), cd)
	}
	if len(e.Summary) > 0 && r.o.exactLength[e.Path] {
		if got := res.header.Get("Content-Length"); got != e.Headers["Content-Length"] {
			t.Errorf("%s: Content-Length %s, want %s", what, got, e.Headers["Content-Length"])
		}
	}
	if len(e.Response) > 0 {
		r.compareBody(what, e, res)
	}
}

func (r *replayer) compareBody(what string, e traceEvent, res httpResp) {
	t := r.t
	var want traceResponse
	if err := json.Unmarshal(e.Response, &want); err != nil {
		t.Fatal(err)
	}
	switch {
	case len(want.JSON) > 0:
		w := r.expect(mustParse(t, string(want.JSON)), res.json(t))
		g := res.json(t)
		for _, d := range shapeDiff(w, g, r.o.spec) {
			t.Errorf("%s: body %s", what, d)
		}
		if len(shapeDiff(w, g, shapeSpec{})) == 0 && res.header.Get("Content-Length") != e.Headers["Content-Length"] {
			t.Errorf("%s: identical body but Content-Length %s, want %s", what, res.header.Get("Content-Length"), e.Headers["Content-Length"])
		}
	case want.Text != nil:
		if string(res.body) != *want.Text {
			t.Errorf("%s: body %q, want %q", what, res.body, *want.Text)
		}
	case want.Empty:
		if len(res.body) != 0 {
			t.Errorf("%s: body %q, want empty", what, res.body)
		}
	case want.Binary != nil:
		checkImage(t, what, res.body, *want.Binary)
		if want.Base64 != "" {
			if b, _ := base64.StdEncoding.DecodeString(want.Base64); !bytes.Equal(b, res.body) {
				t.Errorf("%s: bytes differ from the recorded ones", what)
			}
		}
	}
}

// expect learns which simulator ids and names stand for the trace's (at
// their first appearance) and returns want with them substituted, so every
// later appearance is checked exactly.
func (r *replayer) expect(want, got any) any {
	r.learn(want, got)
	return r.substTree(want)
}

func (r *replayer) learn(want, got any) {
	switch w := want.(type) {
	case *obj:
		g, ok := got.(*obj)
		if !ok || len(g.keys) != len(w.keys) {
			return
		}
		for i, k := range w.keys {
			gk := g.keys[i]
			if gk != k && isID(k) && isID(gk) {
				r.newSubst(k, gk)
			}
			wv, gv := w.at(k), g.at(gk)
			ws, wok := wv.(string)
			gs, gok := gv.(string)
			if wok && gok && (k == "prompt_id" || k == "filename") {
				r.newSubst(ws, gs)
			}
			r.learn(wv, gv)
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return
		}
		for i := range min(len(w), len(g)) {
			r.learn(w[i], g[i])
		}
	}
}

func (r *replayer) newSubst(from, to string) {
	if _, known := r.subst[from]; !known && from != to {
		r.subst[from] = to
	}
}

func (r *replayer) substTree(v any) any {
	switch t := v.(type) {
	case string:
		if s, ok := r.subst[t]; ok {
			return s
		}
		return t
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = r.substTree(e)
		}
		return out
	case *obj:
		out := newObj()
		for _, k := range t.keys {
			out.set(r.substTree(k).(string), r.substTree(t.at(k)))
		}
		return out
	}
	return v
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func isID(s string) bool { return uuidRe.MatchString(s) }

var describedFile = regexp.MustCompile(`^<(\d+) bytes PNG (\d+)x(\d+), filename=(.+)>$`)

// describedBody rebuilds a request the trace only described.
func (r *replayer) describedBody(desc json.RawMessage) (string, []byte) {
	var d map[string]any
	if err := json.Unmarshal(desc, &d); err != nil {
		r.t.Fatal(err)
	}
	if raw, ok := d["raw"].(string); ok {
		return "application/json", []byte(raw)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields, _ := d["multipart_fields"].(map[string]any)
	for k, v := range d {
		if k != "multipart_fields" {
			fields[k] = v
		}
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := fields[k].(string)
		if m := describedFile.FindStringSubmatch(v); m != nil {
			fw, _ := mw.CreateFormFile(k, m[4])
			fw.Write(r.o.files[m[1]+" "+m[2]+"x"+m[3]])
			continue
		}
		mw.WriteField(k, v)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func checkImage(t *testing.T, what string, b []byte, want traceImage) {
	t.Helper()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: not an image: %v", what, err)
		return
	}
	if want.IsPNG && format != "png" || want.IsJPEG && format != "jpeg" {
		t.Errorf("%s: format %s, want png=%v jpeg=%v", what, format, want.IsPNG, want.IsJPEG)
	}
	if want.Width != 0 && (cfg.Width != want.Width || cfg.Height != want.Height) {
		t.Errorf("%s: %dx%d, want %dx%d", what, cfg.Width, cfg.Height, want.Width, want.Height)
	}
}

// compareFrames holds a socket's frames to the recorded ones.
func (r *replayer) compareFrames(name string) {
	t := r.t
	want := r.recorded(name)
	got := r.sockets[name].got
	if len(got) < len(want) {
		t.Errorf("%s: %d frames, want %d: got %v", name, len(got), len(want), frameTypes(got))
		return
	}
	if len(got) > len(want) && !r.o.truncated {
		t.Errorf("%s: %d extra frames %v", name, len(got)-len(want), frameTypes(got[len(want):]))
	}
	got = got[:len(want)]
	if !r.o.statusApart {
		r.compareSeq(name, want, got)
		return
	}
	isStatus := func(typ string) bool { return typ == "status" }
	wantS, wantO := splitTrace(want, isStatus)
	gotS, gotO := splitFrames(got, isStatus)
	r.compareSeq(name+" (other)", wantO, gotO)
	// How many prompts a status counts depends on how requests raced the
	// worker; the number of broadcasts and the final count do not.
	n := len(wantS) - 1
	if n < 0 || len(gotS) != len(wantS) {
		t.Errorf("%s: %d status frames, want %d", name, len(gotS), len(wantS))
		return
	}
	saved := r.o.spec
	r.o.spec = saved.merge(shapeSpec{blind: []string{"queue_remaining"}})
	r.compareSeq(name+" (status)", wantS[:n], gotS[:n])
	r.o.spec = saved
	r.compareSeq(name+" (last status)", wantS[n:], gotS[n:])
}

func splitTrace(es []traceEvent, pick func(string) bool) (in, out []traceEvent) {
	for _, e := range es {
		var typ string
		if e.Frame == "text" {
			typ, _ = mustParseRaw(e.JSON).(*obj).str("type")
		}
		if pick(typ) {
			in = append(in, e)
		} else {
			out = append(out, e)
		}
	}
	return in, out
}

func splitFrames(fs []wsFrameT, pick func(string) bool) (in, out []wsFrameT) {
	for _, f := range fs {
		if pick(f.typ) {
			in = append(in, f)
		} else {
			out = append(out, f)
		}
	}
	return in, out
}

func mustParseRaw(b []byte) any {
	v, err := parsePy(b)
	if err != nil {
		panic(err)
	}
	return v
}

func (r *replayer) compareSeq(name string, want []traceEvent, got []wsFrameT) {
	t := r.t
	if len(want) != len(got) {
		t.Errorf("%s: %d frames, want %d", name, len(got), len(want))
		return
	}
	for i, e := range want {
		where := name + " frame " + itoa(i)
		if e.Frame == "binary" {
			r.compareBinary(where, e, got[i])
			continue
		}
		if got[i].msg == nil {
			t.Errorf("%s: binary frame, want %s", where, e.JSON)
			continue
		}
		w := r.expect(mustParseRaw(e.JSON), got[i].msg)
		for _, d := range shapeDiff(w, got[i].msg, r.o.spec) {
			t.Errorf("%s (%s): %s", where, got[i].typ, d)
		}
	}
}

func (r *replayer) compareBinary(where string, e traceEvent, f wsFrameT) {
	t := r.t
	if !f.binary || len(f.data) < 8 {
		t.Errorf("%s: got %q, want a binary frame", where, f.data)
		return
	}
	if typ := binary.BigEndian.Uint32(f.data); int(typ) != e.EventType {
		t.Errorf("%s: event type %d, want %d", where, typ, e.EventType)
		return
	}
	img := f.data[8:]
	if e.EventType == 4 {
		n := binary.BigEndian.Uint32(f.data[4:])
		meta := mustParseRaw(f.data[8 : 8+n])
		for _, d := range shapeDiff(r.expect(mustParseRaw(e.Metadata), meta), meta, r.o.spec) {
			t.Errorf("%s metadata: %s", where, d)
		}
		img = f.data[8+n:]
	} else if format := binary.BigEndian.Uint32(f.data[4:]); format != 2 {
		t.Errorf("%s: image format %d, want 2 (PNG)", where, format)
	}
	checkImage(t, where, img, *e.Image)
}

// testPNG makes a PNG of the given size with a gradient, so two sizes never
// share bytes.
func testPNG(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x * 5), uint8(y * 7), 90, 255})
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}
