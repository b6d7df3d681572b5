package api

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/file"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// fileView is a file as the API shows it.
type fileView struct {
	FileID      string  `json:"fileId"`
	Filename    string  `json:"filename"`
	URL         string  `json:"url"`
	Size        int64   `json:"size"`
	ContentType string  `json:"contentType"`
	CreatedAt   string  `json:"createdAt"`
	Owner       string  `json:"owner"`
	TaskID      *string `json:"taskId"`
	NodeID      string  `json:"nodeId,omitempty"`
	// Pinned keeps the file from retention.
	Pinned bool `json:"pinned"`
}

func (s *Server) makeFileView(f *file.File) fileView {
	v := fileView{
		FileID: f.ID, Filename: f.Filename, Size: f.Size, ContentType: f.ContentType,
		CreatedAt: formatTime(f.CreatedAt), Owner: f.Owner, NodeID: f.NodeID, Pinned: f.Pinned,
		URL: file.URL(s.deps.Config.Current().Server.PublicBaseURL, f.ID, f.Filename),
	}
	if f.TaskID != "" {
		v.TaskID = &f.TaskID
	}
	return v
}

// multipartOverhead is allowed on top of the upload limit for headers and boundaries.
const multipartOverhead = 64 << 10

// uploadFile is POST /api/files/upload with the multipart field "file".
// Its body may take server.transferTimeout rather than server.readTimeout.
// A user's upload counts towards limits.maxStoredBytesPerUser: one that
// would pass it is a 429, and none is read from a user already at it.
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) error {
	s.extendDeadlines(w, true)
	cfg := s.deps.Config.Current()
	c := claims(r)
	room, used, err := s.storedRoom(r.Context(), c.Username, c.IsAdmin(), cfg.Limits)
	if err != nil {
		return err
	}
	limit := cfg.Files.MaxUploadBytes
	r.Body = http.MaxBytesReader(w, r.Body, limit+multipartOverhead)
	part, err := filePart(r)
	if err != nil {
		return multipartErr(err, limit)
	}
	up := upload{part: part, max: limit}
	if room >= 0 && room < limit {
		up.max, up.quota = room, func() error { return storedQuotaError(cfg.Limits.MaxStoredBytesPerUser, used) }
	}
	return s.storeUpload(w, r, up)
}

// errNoFilePart: the multipart body has no part named "file".
var errNoFilePart = errors.New(`the multipart field "file" is missing`)

// filePart returns the part of r's multipart body named "file", skipping
// the others; errNoFilePart when there is none.
func filePart(r *http.Request) (*multipart.Part, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, err
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, errNoFilePart
		}
		if err != nil {
			return nil, err
		}
		if part.FormName() == "file" {
			return part, nil
		}
	}
}

// bodyReader keeps the error of reading a request body, to tell a body
// that was cut or malformed (400, or 413 past the limit) from a failure to
// store it (500).
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// upload is one file being received.
type upload struct {
	part *multipart.Part
	// max bounds the bytes kept: the upload limit, or the room left under
	// the caller's storage quota when that is smaller.
	max int64
	// quota, when set, is the error of a file over max: max is the quota's.
	quota func() error
}

func (s *Server) storeUpload(w http.ResponseWriter, r *http.Request, up upload) error {
	name := blob.SanitizeFilename(up.part.FileName())
	id := uuid.NewString()
	body := &bodyReader{r: up.part}
	n, err := s.deps.Blob.Put(r.Context(), id, body, up.max)
	switch {
	case errors.Is(err, blob.ErrTooLarge) && up.quota != nil:
		return up.quota()
	case err != nil && body.err != nil:
		return multipartErr(body.err, up.max) // the body was cut or malformed: not our failure
	case err != nil:
		return uploadErr(err, up.max)
	}
	head := s.sniff(r, id)
	f := &file.File{
		ID: id, Owner: claims(r).Username, Filename: name,
		ContentType: blob.ContentType(name, head), Size: n, CreatedAt: s.now(),
	}
	if err := s.deps.Store.FileInsert(r.Context(), f); err != nil {
		_ = s.deps.Blob.Delete(r.Context(), id)
		return err
	}
	return writeJSON(w, s.makeFileView(f))
}

// sniff reads the first bytes of a stored file for content detection.
func (s *Server) sniff(r *http.Request, id string) []byte {
	bf, err := s.deps.Blob.Open(r.Context(), id)
	if err != nil {
		return nil
	}
	defer bf.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(bf, head)
	return head[:n]
}

// multipartErr maps an error reading the multipart body: over the limit is
// 413, a timeout 408, a body that is not multipart/form-data, has no "file"
// part, ends early (the client went away) or is malformed 400.
func multipartErr(err error, limit int64) error {
	switch {
	case errors.Is(err, http.ErrNotMultipart), errors.Is(err, http.ErrMissingBoundary):
		return errorf(http.StatusBadRequest, "invalid_upload", "Send multipart/form-data with the file in the field \"file\".")
	case errors.Is(err, errNoFilePart):
		return errorf(http.StatusBadRequest, "invalid_upload", "The multipart field \"file\" is missing.")
	}
	if e := uploadErr(err, limit); e != err {
		return e
	}
	switch {
	case isTimeout(err):
		return errTimeout
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "upload_aborted", "The upload's body ended early; send the whole file again.")
	}
	return errorf(http.StatusBadRequest, "invalid_upload", "The multipart body is malformed: %v.", err)
}

func uploadErr(err error, limit int64) error {
	var maxErr *http.MaxBytesError
	if errors.Is(err, blob.ErrTooLarge) || errors.As(err, &maxErr) {
		return errorf(http.StatusRequestEntityTooLarge, "file_too_large", "The file is larger than the upload limit of %d bytes.", limit)
	}
	return err
}

// listFiles is GET /api/files (limit, offset, taskId).
func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) error {
	limit, offset, err := parsePage(r.URL.Query())
	if err != nil {
		return err
	}
	p := &store.FileListParams{TaskID: r.URL.Query().Get("taskId"), Limit: limit, Offset: offset}
	if c := claims(r); !c.IsAdmin() {
		p.Owner = c.Username
	}
	res, err := s.deps.Store.FileList(r.Context(), p)
	if err != nil {
		return err
	}
	items := make([]fileView, 0, len(res.Items))
	for _, f := range res.Items {
		items = append(items, s.makeFileView(f))
	}
	return writeJSON(w, map[string]any{"total": res.Total, "items": items, "limit": limit, "offset": offset})
}

// ownFile loads a file record the caller may see; others' read as missing.
func (s *Server) ownFile(r *http.Request) (*file.File, error) {
	f, err := s.deps.Store.FileGet(r.Context(), r.PathValue("id"))
	if err == nil && !claims(r).IsAdmin() && f.Owner != claims(r).Username {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "file_not_found", "No file %q.", r.PathValue("id"))
	}
	return f, err
}

// getFile is GET /api/files/{id}: the record.
func (s *Server) getFile(w http.ResponseWriter, r *http.Request) error {
	f, err := s.ownFile(r)
	if err != nil {
		return err
	}
	return writeJSON(w, s.makeFileView(f))
}

// pinFile is POST /api/files/{id}/pin: retention keeps the file whatever
// its age.
func (s *Server) pinFile(w http.ResponseWriter, r *http.Request) error {
	return s.setFilePin(w, r, true)
}

// unpinFile is DELETE /api/files/{id}/pin: retention applies again.
func (s *Server) unpinFile(w http.ResponseWriter, r *http.Request) error {
	return s.setFilePin(w, r, false)
}

func (s *Server) setFilePin(w http.ResponseWriter, r *http.Request, pinned bool) error {
	f, err := s.ownFile(r)
	if err != nil {
		return err
	}
	f, err = s.deps.Store.FilePin(r.Context(), &store.PinParams{ID: f.ID, Pinned: pinned})
	if errors.Is(err, store.ErrNotFound) { // deleted meanwhile
		return errorf(http.StatusNotFound, "file_not_found", "No file %q.", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	return writeJSON(w, s.makeFileView(f))
}

// deleteFile is DELETE /api/files/{id}: bytes and record.
func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) error {
	f, err := s.ownFile(r)
	if err != nil {
		return err
	}
	if err := s.deps.Store.FileDelete(r.Context(), f.ID); err != nil {
		return err
	}
	if err := s.deps.Blob.Delete(r.Context(), f.ID); err != nil {
		s.log.WarnContext(r.Context(), "delete file bytes failed", "file_id", f.ID, "err", err)
	}
	return writeJSON(w, map[string]any{"fileId": f.ID, "deleted": true})
}

// serveFile is GET /files/{id}/{name}: the bytes, with Range support. The
// random id is the capability, so no token is needed (URLs work in <img>).
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) error {
	f, err := s.deps.Store.FileGet(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && f.Filename != r.PathValue("name")) {
		return errorf(http.StatusNotFound, "file_not_found", "No such file.")
	}
	if err != nil {
		return err
	}
	if s.deps.Links != nil {
		return s.redirectFile(w, r, f)
	}
	bf, err := s.deps.Blob.Open(r.Context(), f.ID)
	if errors.Is(err, blob.ErrNotFound) {
		return errorf(http.StatusNotFound, "file_not_found", "The file's bytes are gone.")
	}
	if err != nil {
		return err
	}
	defer bf.Close()
	s.extendDeadlines(w, false)
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": f.Filename}))
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	// A range outside the file (416) or a failed precondition (412) is
	// answered in the envelope, not in ServeContent's plain text.
	http.ServeContent(s.envelopeErrors(w, r), r, "", bf.ModTime(), bf)
	return nil
}

// redirectFile answers GET /files/{id}/{name} with a 302 to a presigned
// URL of the object store, which sends the same Content-Type and
// Content-Disposition the gateway would. The redirect itself is not cached:
// the URL it names expires after files.s3.linkTtl.
func (s *Server) redirectFile(w http.ResponseWriter, r *http.Request, f *file.File) error {
	link, err := s.deps.Links.Link(r.Context(), f.ID, blob.LinkOptions{
		Filename: f.Filename, ContentType: f.ContentType, TTL: time.Duration(s.deps.Config.Current().Files.S3.LinkTTL),
	})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, link, http.StatusFound)
	return nil
}

// extendDeadlines gives a file transfer server.transferTimeout from now to
// write its response, and to read its body when read is set, instead of
// the server's readTimeout and writeTimeout.
func (s *Server) extendDeadlines(w http.ResponseWriter, read bool) {
	d := time.Duration(s.deps.Config.Current().Server.TransferTimeout)
	if d <= 0 {
		return
	}
	deadline := time.Now().Add(d) // the network's clock, not the injected one
	rc := http.NewResponseController(w)
	if read {
		if err := rc.SetReadDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.log.Warn("extend the read deadline of a transfer", "err", err)
		}
	}
	if err := rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Warn("extend the write deadline of a transfer", "err", err)
	}
}
