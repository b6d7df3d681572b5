package blob

import (
	"mime"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxFilenameLen is the longest name SanitizeFilename returns, in bytes.
const MaxFilenameLen = 200

// maxExtLen bounds what SanitizeFilename keeps as an extension when it has to
// shorten a name; a longer "extension" is just part of the name.
const maxExtLen = 16

// fallbackName replaces a name that sanitises to nothing.
const fallbackName = "file"

// SanitizeFilename returns the name to store and show for a user-supplied
// file name: its last path element (both / and \ separate), valid UTF-8,
// without control or invisible formatting characters, without characters that
// break a quoted Content-Disposition header (" and \ become _), without "..",
// without spaces or dots at either end, at most MaxFilenameLen bytes (the
// extension is kept when shortening) and never empty ("file"). Letters of
// every script are kept.
func SanitizeFilename(name string) string {
	name = strings.ToValidUTF8(name, "_")
	name = lastElement(name)
	name = strings.Map(filenameRune, name)
	for strings.Contains(name, "..") {
		name = strings.ReplaceAll(name, "..", ".")
	}
	name = trimName(name)
	if len(name) > MaxFilenameLen {
		name = shorten(name)
	}
	if name == "" {
		return fallbackName
	}
	return name
}

// lastElement returns the last non-empty element of a path written with / or \.
func lastElement(name string) string {
	elems := strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' })
	if len(elems) == 0 {
		return ""
	}
	return elems[len(elems)-1]
}

// filenameRune maps one rune: -1 drops it, '_' replaces it.
func filenameRune(r rune) rune {
	switch {
	case r == '"' || r == '\\' || r == '/':
		return '_'
	case unicode.IsControl(r), unicode.Is(unicode.Cf, r), unicode.In(r, unicode.Zl, unicode.Zp):
		// Controls, bidi overrides and zero-width characters: a name must
		// read as what it is ("gpj.exe" must not pass for "exe.jpg").
		return -1
	case r == utf8.RuneError:
		return '_'
	}
	return r
}

// trimName strips spaces and dots from both ends.
func trimName(name string) string {
	return strings.TrimFunc(name, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
}

// shorten cuts a name to MaxFilenameLen bytes on a rune boundary, keeping a
// short extension.
func shorten(name string) string {
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= maxExtLen {
		name, ext = name[:i], name[i:]
	}
	stem := trimName(truncate(name, MaxFilenameLen-len(ext)))
	if stem == "" {
		stem = fallbackName
	}
	return stem + ext
}

// truncate returns the longest prefix of s of at most n bytes that ends on a
// rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// typesByExt are the media types the gateway serves, by lower-case extension.
var typesByExt = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
	".webp": "image/webp", ".gif": "image/gif", ".bmp": "image/bmp",
	".avif": "image/avif", ".tif": "image/tiff", ".tiff": "image/tiff",
	".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm",
	".mov": "video/quicktime", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
	".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac",
	".ogg": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac",
	".json": "application/json", ".txt": "text/plain; charset=utf-8",
	".csv": "text/csv; charset=utf-8", ".pdf": "application/pdf",
	".zip": "application/zip", ".gz": "application/gzip",
	".safetensors": octetStream, ".ckpt": octetStream, ".pt": octetStream, ".latent": octetStream,
}

const octetStream = "application/octet-stream"

// ContentType returns the media type to serve a user's file with: by the
// extension of name when known, else by sniffing head (up to 512 bytes of the
// content). Types a browser would run as a document or script (HTML, SVG,
// XML, JavaScript) are never returned: they become application/octet-stream.
// Callers also send X-Content-Type-Options: nosniff.
func ContentType(name string, head []byte) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if t, ok := typesByExt[strings.ToLower(name[i:])]; ok {
			return t
		}
	}
	return safeType(http.DetectContentType(head))
}

// safeType maps active content to application/octet-stream.
func safeType(t string) string {
	mt, _, err := mime.ParseMediaType(t)
	if err != nil {
		return octetStream
	}
	switch {
	case mt == "text/html", mt == "application/xhtml+xml", mt == "image/svg+xml",
		mt == "text/xml", mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		strings.Contains(mt, "javascript"), strings.Contains(mt, "ecmascript"):
		return octetStream
	}
	return t
}
