package dispatch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync/atomic"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
)

// outputSource is where a run's output files are read from: the instance's
// output folder when the gateway can read it (servers[].outputDir: the same
// host, or a shared volume), else ComfyUI's GET /view. Reading the folder
// spares ComfyUI's HTTP server, which runs on the same Python process as
// its prompts, a request per output file.
type outputSource struct {
	client *comfy.Client
	// dir is the instance's output folder; "" when the gateway cannot read it.
	dir string
	// missed is set once a file listed by ComfyUI was not in dir, so the
	// warning about it is logged once per driver.
	missed *atomic.Bool
	log    *slog.Logger
}

// local opens ref in dir when it is a file of type output found there,
// returning the file and its path; nil when it must be read over /view
// (a file missing from dir is logged once per driver).
func (s outputSource) local(ctx context.Context, ref comfy.FileRef) (*os.File, string) {
	if s.dir == "" || (ref.Type != "" && ref.Type != "output") {
		return nil, ""
	}
	f, err := openInFolder(s.dir, ref)
	if err == nil {
		return f, filepath.Join(s.dir, filepath.FromSlash(path.Join(ref.Subfolder, ref.Filename)))
	}
	if s.missed != nil && s.missed.CompareAndSwap(false, true) {
		s.log.WarnContext(ctx, "an output was not in the instance's outputDir; reading outputs over /view instead where that happens",
			"file", ref.Filename, "err", err)
	}
	return nil, ""
}

// view reads ref over ComfyUI's GET /view.
func (s outputSource) view(ctx context.Context, ref comfy.FileRef) (io.ReadCloser, error) {
	resp, err := s.client.View(ctx, ref)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// errNotRegular: the path names something other than a regular file.
var errNotRegular = errors.New("not a regular file")

// openInFolder opens ref's file inside dir. os.Root refuses any path that
// leaves dir, through ".." or a symbolic link, whatever the instance said.
func openInFolder(dir string, ref comfy.FileRef) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(path.Join(ref.Subfolder, ref.Filename))
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, errors.Join(errNotRegular, err)
	}
	return f, nil
}
