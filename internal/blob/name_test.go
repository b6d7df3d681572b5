package blob

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSanitizeFilename(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 300)
	longCJK := strings.Repeat("图", 100) // 300 bytes
	tests := []struct {
		name, in, want string
	}{
		{"plain", "image.png", "image.png"},
		{"unix traversal", "../../etc/passwd", "passwd"},
		{"windows traversal", `..\..\windows\system32\cmd.exe`, "cmd.exe"},
		{"mixed separators", `a/b\c.txt`, "c.txt"},
		{"trailing separator", "photos/", "photos"},
		{"only dots", "..", "file"},
		{"dots inside", "a..b...png", "a.b.png"},
		{"leading and trailing dots and spaces", "  ..hidden.png. . ", "hidden.png"},
		{"unicode kept", "主服务器 输出 ✓.png", "主服务器 输出 ✓.png"},
		{"emoji kept", "猫🐱.webp", "猫🐱.webp"},
		{"control chars dropped", "a\x00b\x1fc\x7f.png", "abc.png"},
		{"newline header injection", "a\r\nSet-Cookie: x.png", "aSet-Cookie: x.png"},
		{"quotes and backslash", `say "hi".png`, "say _hi_.png"},
		{"bidi override dropped", "invoice\u202egpj.exe", "invoicegpj.exe"},
		{"zero width dropped", "a\u200bb.png", "ab.png"},
		{"invalid utf8", "a\xffb.png", "a_b.png"},
		{"empty", "", "file"},
		{"spaces only", "   ", "file"},
		{"separators only", `/\/`, "file"},
		{"long ascii keeps extension", long + ".png", strings.Repeat("a", 196) + ".png"},
		{"long without extension", long, strings.Repeat("a", 200)},
		{"long cjk cut on rune boundary", longCJK + ".mp4", strings.Repeat("图", 65) + ".mp4"},
		{"long extension is not kept", "a." + long, "a." + strings.Repeat("a", 198)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := SanitizeFilename(tt.in)
			if got != tt.want {
				t.Errorf("SanitizeFilename(%q) = %q, want %q", tt.in, got, tt.want)
			}
			checkSanitized(t, tt.in, got)
		})
	}
}

func FuzzSanitizeFilename(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", "a/../b", `..\..\x`, "image.png", "主服务器.png", "a\x00\n\"\\b",
		"\xff\xfe", " . . ", strings.Repeat("é", 150) + ".jpeg", strings.Repeat(".", 500),
		"a" + strings.Repeat(" ", 250) + ".png", "\u202e\u200b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SanitizeFilename(in)
		checkSanitized(t, in, got)
		if again := SanitizeFilename(got); again != got {
			t.Errorf("not idempotent: %q -> %q -> %q", in, got, again)
		}
	})
}

// checkSanitized asserts the invariants every sanitised name holds.
func checkSanitized(t *testing.T, in, got string) {
	t.Helper()
	switch {
	case got == "":
		t.Errorf("SanitizeFilename(%q) is empty", in)
	case len(got) > MaxFilenameLen:
		t.Errorf("SanitizeFilename(%q) = %d bytes, want <= %d", in, len(got), MaxFilenameLen)
	case !utf8.ValidString(got):
		t.Errorf("SanitizeFilename(%q) = %q, not valid UTF-8", in, got)
	case strings.ContainsAny(got, `/\"`):
		t.Errorf("SanitizeFilename(%q) = %q holds a separator or quote", in, got)
	case strings.Contains(got, ".."):
		t.Errorf("SanitizeFilename(%q) = %q holds ..", in, got)
	case strings.IndexFunc(got, unicode.IsControl) >= 0:
		t.Errorf("SanitizeFilename(%q) = %q holds a control character", in, got)
	case strings.TrimFunc(got, func(r rune) bool { return r == '.' || unicode.IsSpace(r) }) != got:
		t.Errorf("SanitizeFilename(%q) = %q starts or ends with a space or dot", in, got)
	}
}

func TestContentType(t *testing.T) {
	t.Parallel()
	pngHead := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	tests := []struct {
		name, file string
		head       []byte
		want       string
	}{
		{"png by extension", "a.png", nil, "image/png"},
		{"upper-case extension", "A.JPG", nil, "image/jpeg"},
		{"jpeg", "a.jpeg", nil, "image/jpeg"},
		{"webp", "a.webp", nil, "image/webp"},
		{"gif", "a.gif", nil, "image/gif"},
		{"mp4", "a.mp4", nil, "video/mp4"},
		{"webm", "a.webm", nil, "video/webm"},
		{"mov", "a.mov", nil, "video/quicktime"},
		{"wav", "a.wav", nil, "audio/wav"},
		{"mp3", "a.mp3", nil, "audio/mpeg"},
		{"flac", "a.flac", nil, "audio/flac"},
		{"ogg", "a.ogg", nil, "audio/ogg"},
		{"json", "a.json", nil, "application/json"},
		{"txt", "notes.txt", nil, "text/plain; charset=utf-8"},
		{"extension wins over content", "a.png", []byte("<html><script>"), "image/png"},
		{"sniffed png", "upload", pngHead, "image/png"},
		{"sniffed html is neutralised", "page", []byte("<!DOCTYPE html><html>"), octetStream},
		{"html extension is sniffed then neutralised", "x.html", []byte("<html><body>"), octetStream},
		{"svg is neutralised", "x.svg", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">`), octetStream},
		{"javascript extension sniffs as text", "x.js", []byte("alert(1)"), "text/plain; charset=utf-8"},
		{"binary", "blob", []byte{0, 1, 2, 3}, octetStream},
		{"empty head", "noext", nil, "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ContentType(tt.file, tt.head); got != tt.want {
				t.Errorf("ContentType(%q, %q) = %q, want %q", tt.file, tt.head, got, tt.want)
			}
		})
	}
}

func TestSafeTypeNeverActive(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"text/html; charset=utf-8", "image/svg+xml", "text/javascript", "application/javascript",
		"application/xhtml+xml", "text/xml; charset=utf-8", "application/ecmascript", "not a type",
	} {
		if got := safeType(in); got != octetStream {
			t.Errorf("safeType(%q) = %q, want %q", in, got, octetStream)
		}
	}
}
