// Package buildinfo says which build of ComfyFleet is running: its version,
// the source revision it was built from and the Go toolchain. Release builds
// set the version at link time:
//
//	go build -ldflags "-X github.com/comfyfleet/comfyfleet/internal/buildinfo.version=v1.4.0" ./cmd/comfyfleet
//
// Without it, the module version and VCS stamp that the go command embeds
// are used (a build from a git checkout reads like
// v0.0.0-20261203161200-fc1fdcd12345+dirty), and "devel" when there is none.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// version is set by the linker (-X) for release builds.
var version string

// Info describes the running binary.
type Info struct {
	// Version is the release version, or the module's pseudo-version, or "devel".
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from ("" when unknown).
	Revision string `json:"revision,omitempty"`
	// Time is the commit's time, RFC 3339 ("" when unknown).
	Time string `json:"time,omitempty"`
	// Modified reports uncommitted changes in the built tree.
	Modified bool `json:"modified,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"goVersion"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

var read = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(version, bi)
})

// Get returns the running binary's build info (read once).
func Get() Info { return read() }

// fromBuildInfo builds an Info from the linker's version (may be "") and
// the go command's stamp (may be nil).
func fromBuildInfo(linked string, bi *debug.BuildInfo) Info {
	info := Info{Version: linked, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// ShortRevision is the first 12 characters of the revision.
func (i Info) ShortRevision() string {
	if len(i.Revision) > 12 {
		return i.Revision[:12]
	}
	return i.Revision
}

// String is one line for `comfyfleet version`:
// "comfyfleet v1.4.0 (fc1fdcd12345, 2026-12-03T16:12:00Z, go1.26.8 linux/amd64)".
func (i Info) String() string {
	parts := []string{}
	if rev := i.ShortRevision(); rev != "" {
		if i.Modified {
			rev += "+dirty"
		}
		parts = append(parts, rev)
	}
	if i.Time != "" {
		parts = append(parts, i.Time)
	}
	parts = append(parts, i.GoVersion+" "+i.Platform)
	return fmt.Sprintf("comfyfleet %s (%s)", i.Version, strings.Join(parts, ", "))
}
