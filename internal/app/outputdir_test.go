package app_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// TestOutputsFromFolder: with the instance's output folder shared
// (servers[].outputDir), outputs are copied from the folder, byte for
// byte, and ComfyUI's /view is never asked: here every /view fails.
func TestOutputsFromFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := apptest.Start(t, apptest.Options{
		Instances: 1,
		Sim:       comfysim.Options{OutputDir: dir},
		Configure: func(c *config.Config) { c.Servers[0].OutputDir = dir },
	})
	e.Sims[0].InjectHTTPFault(comfysim.HTTPFault{Route: "/view", Times: 1_000_000})
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, user)

	v := submit(e, user, map[string]any{"workflow": basic("folder/out")})
	got := waitStatus(e, user, v.ID, "completed", 10*time.Second)
	if len(got.Result.Files) != 1 {
		t.Fatalf("files = %v, want one", got.Result.Files)
	}
	served := download(t, got.Result.Files[0], "image/png")
	onDisk := filesUnder(t, dir)
	if len(onDisk) != 1 || !bytes.Equal(onDisk[0], served) {
		t.Fatalf("served %d bytes; the output folder holds %d files, and the file served is not the one written", len(served), len(onDisk))
	}
	// On one file system the output is linked into the file store, not copied.
	out, stored := statUnder(t, dir, ""), statUnder(t, e.DataDir, got.Result.Outputs["2"][0].FileID)
	if !os.SameFile(out, stored) {
		t.Errorf("the stored output is a copy, not a link of the instance's file")
	}
}

// statUnder returns the one regular file under dir named name ("": any).
func statUnder(t *testing.T, dir, name string) fs.FileInfo {
	t.Helper()
	var found fs.FileInfo
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || (name != "" && d.Name() != name) {
			return err
		}
		found, err = os.Stat(p)
		return err
	})
	if err != nil || found == nil {
		t.Fatalf("no file %q under %s: %v", name, dir, err)
	}
	return found
}

// TestOutputsFolderNotShared: an outputDir that does not hold the outputs
// (a mount missing on the gateway's host) costs speed, not results: they
// are read over /view.
func TestOutputsFolderNotShared(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{
		Instances: 1,
		Configure: func(c *config.Config) { c.Servers[0].OutputDir = t.TempDir() },
	})
	user := e.Login(apptest.User, apptest.UserPass)
	waitAlive(e, user)
	v := submit(e, user, map[string]any{"workflow": basic("folder/elsewhere")})
	got := waitStatus(e, user, v.ID, "completed", 10*time.Second)
	for _, url := range got.Result.Files {
		assertPNG(t, url)
	}
}

// filesUnder returns the contents of every regular file under dir.
func filesUnder(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		out = append(out, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
