package comfysim

import (
	"bytes"
	"compress/flate"
	"image/png"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// uploadFile posts a multipart /upload/image with extra form fields.
func uploadFile(t testing.TB, s *Sim, name string, data []byte, fields map[string]string) httpResp {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("image", name)
	fw.Write(data)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.Close()
	return do(t, "POST", s.URL()+"/upload/image", mw.FormDataContentType(), buf.Bytes())
}

func TestUploadNaming(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	a, b, c := testPNG(4, 4), testPNG(5, 4), testPNG(6, 4)
	steps := []struct {
		data   []byte
		fields map[string]string
		want   string
	}{
		{a, nil, `{"name": "x.png", "subfolder": "", "type": "input"}`},
		{a, nil, `{"name": "x.png", "subfolder": "", "type": "input"}`},     // same bytes keep the name
		{b, nil, `{"name": "x (1).png", "subfolder": "", "type": "input"}`}, // other bytes: next free name
		{c, nil, `{"name": "x (2).png", "subfolder": "", "type": "input"}`}, //
		{b, nil, `{"name": "x (1).png", "subfolder": "", "type": "input"}`}, // matches the (1) copy
		{c, map[string]string{"overwrite": "true"}, `{"name": "x.png", "subfolder": "", "type": "input"}`},
		{a, map[string]string{"overwrite": "True"}, `{"name": "x (3).png", "subfolder": "", "type": "input"}`}, // only "true"/"1"
		{a, map[string]string{"subfolder": "gw/job1/"}, `{"name": "x.png", "subfolder": "gw/job1/", "type": "input"}`},
		{a, map[string]string{"type": "temp"}, `{"name": "x.png", "subfolder": "", "type": "temp"}`},
	}
	for i, st := range steps {
		r := uploadFile(t, s, "x.png", st.data, st.fields)
		if r.status != 200 || string(r.body) != st.want {
			t.Errorf("step %d: %d %s, want %s", i, r.status, r.body, st.want)
		}
	}
	if v := get(t, s.URL()+"/view?filename=x.png&type=input"); !bytes.Equal(v.body, c) {
		t.Error("overwrite did not replace x.png")
	}
	if v := get(t, s.URL()+"/view?filename=x.png&type=input&subfolder=gw/job1"); v.status != 200 {
		t.Errorf("file in subfolder: %d", v.status)
	}
}

func TestUploadErrors(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	tests := []struct {
		name   string
		file   string
		fields map[string]string
		status int
	}{
		{"escaping subfolder", "x.png", map[string]string{"subfolder": "../../etc"}, 400},
		{"absolute subfolder", "x.png", map[string]string{"subfolder": "/tmp"}, 400},
		{"escaping filename", "../x.png", nil, 400},
		{"unknown type", "x.png", map[string]string{"type": "models"}, 500},
		{"empty filename", "", nil, 400},
	}
	for _, tc := range tests {
		if r := uploadFile(t, s, tc.file, []byte("png"), tc.fields); r.status != tc.status {
			t.Errorf("%s: status %d (%s), want %d", tc.name, r.status, r.body, tc.status)
		}
	}
	if r := postJSON(t, s.URL()+"/upload/image", `{"image": "x"}`); r.status != 400 || len(r.body) != 0 {
		t.Errorf("non-multipart upload: %d %q, want 400 empty", r.status, r.body)
	}
}

func TestViewRoutes(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	id := submit(t, s, `{"1": {"class_type": "EmptyImage", "inputs": {"width": 20, "height": 10, "batch_size": 2, "color": 65280}},
  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "gw/run_%width%x%height%"}}}`, "gw")
	ws.untilDone(t, id)
	tests := []struct {
		query, ctype string
		status       int
	}{
		{"filename=run_20x10_00001_.png&subfolder=gw", "image/png", 200},
		{"filename=run_20x10_00002_.png&subfolder=gw&type=output", "image/png", 200},
		{"filename=gw/run_20x10_00001_.png", "application/octet-stream", 404}, // only the basename counts
		{"filename=run_20x10_00001_.png [output]&subfolder=gw&type=input", "image/png", 200},
		{"filename=run_20x10_00001_.png&subfolder=gw&preview=jpeg;70", "image/jpeg", 200},
		{"filename=run_20x10_00001_.png&subfolder=gw&preview=png", "image/webp", 200},
		{"filename=run_20x10_00001_.png&subfolder=gw&channel=rgb", "image/png", 200},
		{"filename=run_20x10_00001_.png&subfolder=gw&channel=a", "image/png", 200},
		{"filename=missing.png", "application/octet-stream", 404},
		{"subfolder=gw", "application/octet-stream", 404},
		{"filename=../../etc/passwd&type=input", "application/octet-stream", 400},
		{"filename=/etc/passwd", "application/octet-stream", 400},
		{"filename=x.png&type=models", "application/octet-stream", 400},
		{"filename=x.png&subfolder=../..", "application/octet-stream", 403},
	}
	for _, tc := range tests {
		r := get(t, s.URL()+"/view?"+strings.ReplaceAll(tc.query, " ", "%20"))
		if r.status != tc.status || r.header.Get("Content-Type") != tc.ctype {
			t.Errorf("/view?%s: %d %s, want %d %s", tc.query, r.status, r.header.Get("Content-Type"), tc.status, tc.ctype)
		}
	}
	img, err := png.Decode(bytes.NewReader(get(t, s.URL()+"/view?filename=run_20x10_00001_.png&subfolder=gw").body))
	if err != nil || img.Bounds().Dx() != 20 || img.Bounds().Dy() != 10 {
		t.Errorf("saved image: %v %v, want 20x10", err, img.Bounds())
	}
	req, _ := http.NewRequest("GET", s.URL()+"/view?filename=run_20x10_00001_.png&subfolder=gw", nil)
	req.Header.Set("Range", "bytes=0-7")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPartialContent {
		t.Errorf("range request: %d, want 206 (FileResponse)", res.StatusCode)
	}
}

func TestSavedPNGCarriesThePrompt(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		s := startSim(t, Options{DisableMetadata: disable})
		ws := dialWS(t, s, "?clientId=gw")
		r := postJSON(t, s.URL()+"/prompt", `{"prompt": `+trivialPrompt(9, "meta")+`, "client_id": "gw", "extra_data": {"extra_pnginfo": {"workflow": {"id": "w1"}}}}`)
		id, _ := r.json(t).(*obj).str("prompt_id")
		ws.untilDone(t, id)
		b := get(t, s.URL()+"/view?filename=meta_00001_.png").body
		has := bytes.Contains(b, []byte(`tEXtprompt`)) && bytes.Contains(b, []byte(`tEXtworkflow`+"\x00"+`{"id": "w1"}`))
		if has == disable {
			t.Errorf("DisableMetadata=%v: PNG text chunks present = %v", disable, has)
		}
	}
}

func TestLoadImageFromUploadAndOutput(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	uploadFile(t, s, "in.png", testPNG(40, 30), map[string]string{"subfolder": "job"})
	id := submit(t, s, `{"1": {"class_type": "LoadImage", "inputs": {"image": "job/in.png"}},
  "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "area", "width": 0, "height": 60, "crop": "disabled"}},
  "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "scaled"}}}`, "gw")
	ws.untilDone(t, id)
	img, err := png.Decode(bytes.NewReader(get(t, s.URL()+"/view?filename=scaled_00001_.png").body))
	if err != nil || img.Bounds().Dx() != 80 || img.Bounds().Dy() != 60 {
		t.Fatalf("scaled: %v %v, want 80x60 (width from the aspect ratio)", err, img)
	}
	// An output can be loaded back with the " [output]" annotation.
	id = submit(t, s, `{"1": {"class_type": "LoadImage", "inputs": {"image": "scaled_00001_.png [output]"}},
  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}`, "gw")
	fs := ws.untilDone(t, id)
	out := find(fs, "executed").field("output").(*obj).at("images").([]any)[0].(*obj)
	name, _ := out.str("filename")
	if !strings.HasPrefix(name, "ComfyUI_temp_") || out.at("type") != "temp" {
		t.Errorf("preview output %s, want a temp file", encodePy(out))
	}
	if v := get(t, s.URL()+"/view?filename="+name+"&type=temp"); v.status != 200 {
		t.Errorf("temp preview: %d", v.status)
	}
	// The same node id keeps its random suffix across prompts; the counter moves on.
	id = submit(t, s, `{"1": {"class_type": "LoadImage", "inputs": {"image": "job/in.png"}},
  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}`, "gw")
	next := find(ws.untilDone(t, id), "executed").field("output").(*obj).at("images").([]any)[0].(*obj)
	if want := strings.Replace(name, "00001", "00002", 1); next.at("filename") != want {
		t.Errorf("second preview %v, want %s", next.at("filename"), want)
	}
}

func TestLoadImageRuntimeErrors(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	ws := dialWS(t, s, "?clientId=gw")
	uploadFile(t, s, "broken.png", []byte("not an image"), nil)
	uploadFile(t, s, "ok.png", testPNG(2, 2), map[string]string{"subfolder": "dir"})
	for ref, typ := range map[string]string{"broken.png": "PIL.UnidentifiedImageError", "dir": "IsADirectoryError"} {
		id := submit(t, s, `{"1": {"class_type": "LoadImage", "inputs": {"image": "`+ref+`"}},
  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}`, "gw")
		e := find(ws.untilDone(t, id), "execution_error")
		if e.field("exception_type") != typ {
			t.Errorf("LoadImage %s: %s, want %s", ref, e.data, typ)
		}
	}
}

// TestOutputSize checks that Options.OutputSize pads saved PNGs to that
// size with bytes that do not compress, that they still decode as the
// same image, and that outputs of one image share their bytes.
func TestOutputSize(t *testing.T) {
	t.Parallel()
	const size = 300 << 10
	s := startSim(t, Options{OutputSize: size, DisableMetadata: true})
	ws := dialWS(t, s, "?clientId=gw")
	for _, prefix := range []string{"padded", "again"} {
		id := submit(t, s, trivialPrompt(7, prefix), "gw")
		ws.untilDone(t, id)
	}
	a := get(t, s.URL()+"/view?filename=padded_00001_.png").body
	b := get(t, s.URL()+"/view?filename=again_00001_.png").body
	if len(a) != size || !bytes.Equal(a, b) {
		t.Fatalf("outputs of %d and %d bytes (equal %v), want %d bytes each, equal", len(a), len(b), bytes.Equal(a, b), size)
	}
	img, err := png.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatalf("padded PNG does not decode: %v", err)
	}
	if got := img.Bounds().Dx(); got != 64 {
		t.Errorf("padded PNG is %d pixels wide, want 64", got)
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	_, _ = w.Write(a)
	_ = w.Close()
	if z.Len() < size*99/100 {
		t.Errorf("padded PNG deflates to %d of %d bytes: the padding compresses", z.Len(), size)
	}
	f1, _ := s.files.get(dirOutput, "padded_00001_.png")
	f2, _ := s.files.get(dirOutput, "again_00001_.png")
	if &f1.data[0] != &f2.data[0] {
		t.Error("two outputs of one image hold two copies of its bytes")
	}

	plain := startSim(t, Options{DisableMetadata: true})
	ws = dialWS(t, plain, "?clientId=gw")
	ws.untilDone(t, submit(t, plain, trivialPrompt(7, "plain"), "gw"))
	if n := len(get(t, plain.URL()+"/view?filename=plain_00001_.png").body); n >= 1000 {
		t.Errorf("unpadded output is %d bytes, want a few hundred", n)
	}
}
