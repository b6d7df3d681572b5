package comfysim

import (
	"crypto/sha256"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The three ComfyUI directories. Files live in memory; the naming rules are
// ComfyUI's (server.py image_upload, folder_paths.get_save_image_path).
const (
	dirInput  = "input"
	dirOutput = "output"
	dirTemp   = "temp"
)

// storedFile is one file in a simulated directory.
type storedFile struct {
	data []byte
	mod  time.Time

	sumOnce sync.Once
	sum     [32]byte
}

func (f *storedFile) sha256() [32]byte {
	f.sumOnce.Do(func() { f.sum = sha256.Sum256(f.data) })
	return f.sum
}

// fileTree is one directory tree (input, output or temp).
type fileTree struct {
	files map[string]*storedFile // clean relative path -> file
	dirs  map[string]bool        // clean relative dir paths; "." is the root
	// counters holds, per directory, the largest save counter seen for each
	// filename prefix, so SaveImage's "max existing + 1" needs no listing.
	counters map[string]map[string]int
}

func newFileTree() *fileTree {
	return &fileTree{files: map[string]*storedFile{}, dirs: map[string]bool{".": true}, counters: map[string]map[string]int{}}
}

// fileStore holds an instance's files. It outlives Stop/Restart (a disk does),
// except temp, which ComfyUI wipes at start.
type fileStore struct {
	// mu guards trees and inputVer.
	mu       sync.Mutex
	trees    map[string]*fileTree
	inputVer uint64 // bumped when the root listing of input changes
	// outputDir mirrors the output tree on disk (Options.OutputDir); set
	// before the instance starts.
	outputDir string
}

func newFileStore() *fileStore {
	return &fileStore{trees: map[string]*fileTree{dirInput: newFileTree(), dirOutput: newFileTree(), dirTemp: newFileTree()}}
}

// wipeTemp empties the temp directory, as a ComfyUI start does.
func (s *fileStore) wipeTemp() {
	s.mu.Lock()
	s.trees[dirTemp] = newFileTree()
	s.mu.Unlock()
}

func (s *fileStore) inputVersion() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inputVer
}

// inside cleans rel and reports whether it stays inside its base directory,
// like ComfyUI's os.path.commonpath checks.
func inside(rel string) (string, bool) {
	if strings.HasPrefix(rel, "/") {
		return "", false
	}
	c := path.Clean(rel)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return c, true
}

// get returns the file at rel in dir.
func (s *fileStore) get(dir, rel string) (*storedFile, bool) {
	c, ok := inside(rel)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.trees[dir].files[c]
	return f, ok
}

// exists is os.path.exists for rel in dir: true for files and directories.
func (s *fileStore) exists(dir, rel string) (isDir, ok bool) {
	c, in := inside(rel)
	if !in {
		return false, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.trees[dir]
	if _, ok := t.files[c]; ok {
		return false, true
	}
	return t.dirs[c], t.dirs[c]
}

// put stores data at rel (already checked with inside). An output is also
// written to the output folder on disk, when there is one, before it is
// listed: ComfyUI sends "executed" only after its save node wrote the file.
func (s *fileStore) put(dir, rel string, data []byte, now time.Time) error {
	if dir == dirOutput && s.outputDir != "" {
		if err := writeMirror(s.outputDir, rel, data); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeLocked(dir, rel, data, now)
	return nil
}

// writeMirror writes data to <root>/<rel>, creating folders.
func writeMirror(root, rel string, data []byte) error {
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// storeLocked writes a file and records its name for the save counters and
// the input listing. Caller holds mu.
func (s *fileStore) storeLocked(dir, rel string, data []byte, now time.Time) {
	t := s.trees[dir]
	_, existed := t.files[rel]
	t.files[rel] = &storedFile{data: data, mod: now}
	t.noteName(path.Dir(rel), path.Base(rel))
	if dir == dirInput && path.Dir(rel) == "." && !existed {
		s.inputVer++
	}
}

// mkdirs is os.makedirs(exist_ok=True) for rel.
func (t *fileTree) mkdirs(rel string) {
	for d := rel; d != "." && d != "/" && !t.dirs[d]; d = path.Dir(d) {
		t.dirs[d] = true
		t.noteName(path.Dir(d), path.Base(d))
	}
}

// noteName records name (a file or directory in dir) in the save counters:
// every "<prefix>_<digits>..." reading of the name counts for that prefix,
// exactly as get_save_image_path's map_filename reads os.listdir.
func (t *fileTree) noteName(dir, name string) {
	m := t.counters[dir]
	if m == nil {
		m = map[string]int{}
		t.counters[dir] = m
	}
	for i := 0; i < len(name); i++ {
		if name[i] != '_' {
			continue
		}
		digits := name[i+1:]
		if j := strings.IndexByte(digits, '_'); j >= 0 {
			digits = digits[:j]
		}
		n := 0
		if v, err := strToInt(digits); err == nil {
			n = goInt(v)
		}
		if cur, ok := m[name[:i]]; !ok || n > cur {
			m[name[:i]] = n
		}
	}
}

// nextCounter is the counter SaveImage uses for prefix in dir/sub.
func (s *fileStore) nextCounter(dir, sub, prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.trees[dir]
	t.mkdirs(sub)
	return t.counters[sub][prefix] + 1
}

// inputImages is LoadImage's combo: the image files at the root of input, sorted.
func (s *fileStore) inputImages() []any {
	s.mu.Lock()
	var names []string
	for rel := range s.trees[dirInput].files {
		if !strings.Contains(rel, "/") && strings.HasPrefix(mimeType(rel), "image/") {
			names = append(names, rel)
		}
	}
	s.mu.Unlock()
	slices.Sort(names)
	list := make([]any, len(names))
	for i, n := range names {
		list[i] = n
	}
	return list
}

// uploadResult is the outcome of POST /upload/image.
type uploadResult struct {
	name   string
	status int // 200, or the error status ComfyUI answers with
}

// upload stores an uploaded file the way server.py image_upload does:
// subfolder created, "name (i).ext" on collision, same bytes keep the name,
// overwrite only for "true" or "1".
func (s *fileStore) upload(dir, subfolder, filename string, data []byte, overwrite bool, now time.Time) uploadResult {
	sub := "."
	if subfolder != "" {
		sub = path.Clean(subfolder)
	}
	rel, ok := inside(path.Join(sub, filename))
	if !ok || strings.HasPrefix(subfolder, "/") || strings.HasPrefix(filename, "/") {
		return uploadResult{status: 400}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.trees[dir]
	t.mkdirs(sub)
	if !t.dirs[path.Dir(rel)] {
		return uploadResult{status: 500} // open() of a file in a missing directory
	}
	name := filename
	if !overwrite {
		var dup bool
		name, rel, dup = t.freeName(sub, filename, data)
		if dup {
			return uploadResult{name: name, status: 200}
		}
	}
	s.storeLocked(dir, rel, data, now)
	return uploadResult{name: name, status: 200}
}

// freeName walks name, "name (1).ext", ... and stops at the first free
// candidate, or at an existing one with identical content (dup).
func (t *fileTree) freeName(sub, filename string, data []byte) (name, rel string, dup bool) {
	root, ext := pySplitext(filename)
	want := sha256.Sum256(data)
	name = filename
	rel = path.Join(sub, name)
	for i := 1; ; i++ {
		f, isFile := t.files[rel]
		if !isFile && !t.dirs[rel] {
			return name, rel, false
		}
		if isFile && f.sha256() == want {
			return name, rel, true
		}
		name = root + " (" + strconv.Itoa(i) + ")" + ext
		rel = path.Join(sub, name)
	}
}

// pySplitext is os.path.splitext.
func pySplitext(p string) (root, ext string) {
	base := p[strings.LastIndexByte(p, '/')+1:]
	dot := strings.LastIndexByte(base, '.')
	if dot <= 0 || strings.Trim(base[:dot], ".") == "" {
		return p, ""
	}
	cut := len(p) - len(base) + dot
	return p[:cut], p[cut:]
}

// mimeTypes follows Python's mimetypes for the extensions ComfyUI meets.
var mimeTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
	".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
	".svg": "image/svg+xml", ".ico": "image/vnd.microsoft.icon", ".json": "application/json",
	".txt": "text/plain", ".mp4": "video/mp4", ".webm": "video/webm", ".wav": "audio/x-wav",
	".mp3": "audio/mpeg", ".flac": "audio/flac", ".html": "text/html", ".htm": "text/html",
	".js": "text/javascript", ".css": "text/css",
}

// mimeType is mimetypes.guess_type(name)[0], or "" when unknown.
func mimeType(name string) string {
	_, ext := pySplitext(name)
	return mimeTypes[strings.ToLower(ext)]
}
