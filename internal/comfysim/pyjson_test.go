package comfysim

import (
	"bytes"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"
)

func TestPyFloatRepr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   float64
		want string
	}{
		{1, "1.0"}, {0.1, "0.1"}, {math.Copysign(0, -1), "-0.0"}, {3.0, "3.0"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"},
		{123456789.0, "123456789.0"}, {0.0001, "0.0001"}, {0.00001, "1e-05"}, {1.5e-7, "1.5e-07"},
		{18446744073709551615, "1.8446744073709552e+19"}, {2.5, "2.5"}, {100, "100.0"},
	}
	for _, tc := range tests {
		if got := pyFloatRepr(tc.in); got != tc.want {
			t.Errorf("pyFloatRepr(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if pyFloatJSON(math.NaN()) != "NaN" || pyFloatJSON(math.Inf(-1)) != "-Infinity" || pyFloatRepr(math.Inf(1)) != "inf" {
		t.Error("non-finite floats are not spelled like Python")
	}
}

func TestParseLikeJSONLoads(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		`{"a": 1, "b": 1.0, "c": 1e2}`:           `{"a": 1, "b": 1.0, "c": 100.0}`,
		`{"a": 1, "a": 2, "b": 3}`:               `{"a": 2, "b": 3}`,
		`[NaN, Infinity, -Infinity]`:             `[NaN, Infinity, -Infinity]`,
		`"caf\u00e9 \ud83d\ude00"`:               `"caf\u00e9 \ud83d\ude00"`,
		` {"x" :[ 18446744073709551616 ]} `:      `{"x": [18446744073709551616]}`,
		`{"s": "<tag> & 'q' \"d\" \\ \t"}`:       `{"s": "<tag> & 'q' \"d\" \\ \t"}`,
		`{"u": "é"}`:                             `{"u": "\u00e9"}`,
		`-0`:                                     `0`,
		`{"nested": {"k": [true, false, null]}}`: `{"nested": {"k": [true, false, null]}}`,
	}
	for in, want := range good {
		v, err := parsePy([]byte(in))
		if err != nil {
			t.Errorf("parsePy(%s): %v", in, err)
			continue
		}
		if got := string(encodePy(v)); got != want {
			t.Errorf("round trip of %s = %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{``, `{`, `{"a" 1}`, `[1,]`, `01`, `1.`, `"tab	in string"`, "\xff", `{'a': 1}`, `nul`, `[1] [2]`} {
		if _, err := parsePy([]byte(in)); err == nil {
			t.Errorf("parsePy(%q) succeeded, want an error", in)
		}
	}
}

func TestPyConversions(t *testing.T) {
	t.Parallel()
	ints := map[string]string{`"64"`: "64", `" -7 "`: "-7", `3.9`: "3", `true`: "1", `"1_000"`: "1000"}
	for in, want := range ints {
		v, exc := pyInt(mustParse(t, in))
		if exc != nil || pyRepr(v) != want {
			t.Errorf("int(%s) = %v, %v; want %s", in, v, exc, want)
		}
	}
	for in, msg := range map[string]string{
		`"wide"`: "invalid literal for int() with base 10: 'wide'",
		`"1.5"`:  "invalid literal for int() with base 10: '1.5'",
		`null`:   "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'",
	} {
		if _, exc := pyInt(mustParse(t, in)); exc == nil || exc.msg != msg {
			t.Errorf("int(%s) raised %v, want %q", in, exc, msg)
		}
	}
	if f, exc := pyFloat("  2.5e1 "); exc != nil || f != 25 {
		t.Errorf("float('2.5e1') = %v, %v", f, exc)
	}
	if _, exc := pyFloat("abc"); exc == nil || exc.msg != "could not convert string to float: 'abc'" {
		t.Errorf("float('abc') raised %v", exc)
	}
	if pyQuote("it's") != `"it's"` || pyQuote(`a"b'c`) != `'a"b\'c'` || pyQuote("x\ny") != `'x\ny'` {
		t.Error("repr of str does not pick quotes like Python")
	}
}

// The embedded catalog is the recorded /object_info, and re-encoding it in
// Python layout gives back the recorded bytes.
func TestCatalogRoundTrip(t *testing.T) {
	t.Parallel()
	c := loadCatalog()
	if len(c.order) != 378 {
		t.Errorf("catalog has %d classes, want 378", len(c.order))
	}
	if got := encodePy(c.root); !bytes.Equal(got, objectInfoJSON) {
		t.Errorf("re-encoded catalog differs from the recorded body (%d vs %d bytes)", len(got), len(objectInfoJSON))
	}
	for _, class := range []string{"EmptyImage", "LoadImage", "ImageInvert", "ImageScale", "ImageBlur", "SaveImage", "PreviewImage",
		"SaveImageWebsocket", "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode"} {
		if _, ok := c.specs[class]; !ok {
			t.Errorf("catalog lacks %s", class)
		}
		if _, ok := nodeFuncs[class]; !ok {
			t.Errorf("%s has no implementation", class)
		}
	}
}

func TestObjectInfoCombos(t *testing.T) {
	t.Parallel()
	s := startSim(t, Options{})
	info := get(t, s.URL()+"/object_info/CheckpointLoaderSimple").json(t).(*obj)
	got := info.sub("CheckpointLoaderSimple").sub("input").sub("required").at("ckpt_name").([]any)[0]
	if pyRepr(got) != pyRepr(stringsToAny(DefaultCheckpoints)) {
		t.Errorf("ckpt_name combo = %s, want the default checkpoints", pyRepr(got))
	}
	uploadFile(t, s, "in.png", testPNG(4, 4), nil)
	uploadFile(t, s, "notes.txt", []byte("x"), nil)
	all := get(t, s.URL()+"/object_info").json(t).(*obj)
	images := all.sub("LoadImage").sub("input").sub("required").at("image").([]any)[0]
	if pyRepr(images) != "['in.png']" {
		t.Errorf("LoadImage combo = %s, want the uploaded images", pyRepr(images))
	}
}

func TestSolidPNG(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ w, h, bpp int }{{1, 1, 3}, {64, 64, 3}, {512, 512, 3}, {97, 13, 4}, {300, 1, 3}} {
		c := [4]uint8{200, 30, 99, 128}
		b := solidPNG(tc.w, tc.h, tc.bpp, c)
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%dx%d: %v", tc.w, tc.h, err)
		}
		if img.Bounds().Dx() != tc.w || img.Bounds().Dy() != tc.h {
			t.Errorf("decoded %v, want %dx%d", img.Bounds(), tc.w, tc.h)
		}
		want := color.NRGBA{200, 30, 99, 255}
		if tc.bpp == 4 {
			want.A = 128
		}
		for _, p := range []image.Point{{0, 0}, {tc.w - 1, tc.h - 1}, {tc.w / 2, tc.h / 2}} {
			if got := color.NRGBAModel.Convert(img.At(p.X, p.Y)); got != want {
				t.Errorf("%dx%d pixel %v = %v, want %v", tc.w, tc.h, p, got, want)
			}
		}
	}
	texts := withTextChunks(solidPNG(2, 2, 3, [4]uint8{}), [][2]string{{"prompt", `{"1": {}}`}})
	if _, err := png.Decode(bytes.NewReader(texts)); err != nil || !bytes.Contains(texts, []byte("tEXtprompt\x00{\"1\": {}}")) {
		t.Errorf("PNG with text chunk: %v", err)
	}
}

// The expected bytes were checked with golang.org/x/image/webp, which
// decodes them to the source pixels exactly.
func TestEncodeWebP(t *testing.T) {
	t.Parallel()
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for y := 0; y < 2; y++ {
		for x := 0; x < 3; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(10 * x), uint8(20 * y), 7, 255})
		}
	}
	var src bytes.Buffer
	png.Encode(&src, img)
	got, err := encodeWebP(src.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	const want = "5249464670000000574542505650384c630000002f024000008040000000e2ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff1f0000000201000088ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff1ef4bf0000000050002828002850282800"
	if hex.EncodeToString(got) != want {
		t.Errorf("encodeWebP = %x, want %s", got, want)
	}
	solid, _ := encodeWebP(solidPNG(7, 3, 3, [4]uint8{200, 100, 50, 255}))
	if hex.EncodeToString(solid) != "524946461a000000574542505650384c0d0000002f068000002859912bd3ff020000" {
		t.Errorf("solid encodeWebP = %x", solid)
	}
}
