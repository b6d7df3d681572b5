package comfysim

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// GET /view and POST /upload/image (server.py view_image, image_upload).

var viewDirs = map[string]string{"output": dirOutput, "input": dirInput, "temp": dirTemp}

// forcedDownload are the types /view refuses to serve inline.
var forcedDownload = map[string]bool{"text/html": true, "text/html-sandboxed": true, "application/xhtml+xml": true, "text/javascript": true, "text/css": true}

func (p *proc) getView(w http.ResponseWriter, r *http.Request) error {
	q := query(r)
	if !q.Has("filename") {
		writeEmpty(w, http.StatusNotFound)
		return nil
	}
	dir, name := annotatedPath(q.Get("filename"), "")
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		writeEmpty(w, http.StatusBadRequest)
		return nil
	}
	if dir == "" {
		typ := "output"
		if q.Has("type") {
			typ = q.Get("type")
		}
		if dir = viewDirs[typ]; dir == "" {
			writeEmpty(w, http.StatusBadRequest)
			return nil
		}
	}
	sub := "."
	if q.Has("subfolder") {
		s, ok := inside(q.Get("subfolder"))
		if !ok {
			writeEmpty(w, http.StatusForbidden)
			return nil
		}
		sub = s
	}
	base := pyBasename(name)
	f, ok := p.sim.files.get(dir, joinRel(sub, base))
	if !ok {
		writeEmpty(w, http.StatusNotFound)
		return nil
	}
	return serveView(w, r, base, f)
}

func serveView(w http.ResponseWriter, r *http.Request, base string, f *storedFile) error {
	q := query(r)
	disposition := `filename="` + base + `"`
	if q.Has("preview") {
		parts := strings.Split(q.Get("preview"), ";")
		format := parts[0]
		if (format != "webp" && format != "jpeg") || strings.Contains(q.Get("channel"), "a") {
			format = "webp"
		}
		quality := 90
		if n, err := strconv.Atoi(parts[len(parts)-1]); err == nil && allDigits(parts[len(parts)-1]) {
			quality = n
		}
		return serveBytes(w, "image/"+format, disposition, func() ([]byte, error) { return previewImage(f.data, format, quality) })
	}
	switch q.Get("channel") {
	case "rgb", "a":
		channel := q.Get("channel")
		return serveBytes(w, "image/png", disposition, func() ([]byte, error) { return reencode(f.data, "png", 0, channel) })
	}
	ctype := mimeType(base)
	if ctype == "" || forcedDownload[ctype] {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Disposition", disposition)
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, "", f.mod, bytes.NewReader(f.data))
	return nil
}

func serveBytes(w http.ResponseWriter, ctype, disposition string, render func() ([]byte, error)) error {
	b, err := render()
	if err != nil {
		return err // PIL cannot open it: the handler raises
	}
	w.Header().Set("Content-Disposition", disposition)
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return nil
}

func previewImage(data []byte, format string, quality int) ([]byte, error) {
	if format == "jpeg" {
		return reencode(data, "jpeg", quality, "")
	}
	return encodeWebP(data)
}

// postUploadImage stores a multipart upload.
func (p *proc) postUploadImage(w http.ResponseWriter, r *http.Request) error {
	form, err := p.readUploadForm(w, r)
	if err != nil {
		return err
	}
	if form.file == nil || form.filename == "" {
		writeEmpty(w, http.StatusBadRequest)
		return nil
	}
	typ, hasType := form.fields["type"]
	if !hasType {
		typ = "input"
	}
	dir := viewDirs[typ]
	if dir == "" {
		return &errServer{"local variable 'type_dir' referenced before assignment"}
	}
	overwrite := form.fields["overwrite"] == "true" || form.fields["overwrite"] == "1"
	res := p.sim.files.upload(dir, form.fields["subfolder"], form.filename, form.file, overwrite, time.Now())
	switch res.status {
	case http.StatusOK:
		writePy(w, http.StatusOK, encodePy(newObj("name", res.name, "subfolder", form.fields["subfolder"], "type", typ)))
		return nil
	case http500:
		return &errServer{"No such file or directory"}
	}
	writeEmpty(w, res.status)
	return nil
}

type uploadForm struct {
	file     []byte // the first "image" part with a filename
	filename string
	fields   map[string]string // first value of each plain field
}

// readUploadForm reads the multipart body in memory, up to the upload limit.
func (p *proc) readUploadForm(w http.ResponseWriter, r *http.Request) (*uploadForm, error) {
	r.Body = http.MaxBytesReader(w, r.Body, p.sim.opts.MaxUploadSize)
	form := &uploadForm{fields: map[string]string{}}
	mr, err := r.MultipartReader()
	if err != nil {
		return form, nil // request.post() of another content type is empty: 400
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return form, nil
		}
		if err != nil {
			return nil, readErr(err)
		}
		if err := form.add(part); err != nil {
			return nil, readErr(err)
		}
	}
}

func readErr(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	return &errServer{err.Error()}
}

func (f *uploadForm) add(part *multipart.Part) error {
	data, err := io.ReadAll(part)
	if err != nil {
		return err
	}
	name, filename := partNames(part)
	if filename != "" {
		if name == "image" && f.file == nil {
			f.file, f.filename = data, filename
		}
		return nil
	}
	if name == "image" && f.file == nil {
		f.filename = "" // a plain field named image: no file
		f.file = data
		return nil
	}
	if _, seen := f.fields[name]; !seen {
		f.fields[name] = string(data)
	}
	return nil
}

// partNames returns the form name and the raw filename of a part
// (multipart.Part.FileName would strip directories, aiohttp does not).
func partNames(part *multipart.Part) (name, filename string) {
	_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return part.FormName(), ""
	}
	return params["name"], params["filename"]
}
