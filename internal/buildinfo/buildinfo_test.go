package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	stamp := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/comfyfleet/comfyfleet", Version: "v0.0.0-20261203161200-fc1fdcd12345+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "fc1fdcd1234567890abcdef"},
			{Key: "vcs.time", Value: "2026-12-03T16:12:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name, linked string
		bi           *debug.BuildInfo
		want         string
	}{
		{"linked version wins", "v1.4.0", stamp, "v1.4.0"},
		{"module pseudo-version", "", stamp, "v0.0.0-20261203161200-fc1fdcd12345+dirty"},
		{"devel without stamp", "", nil, "devel"},
		{"devel for (devel)", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.linked, tc.bi).Version; got != tc.want {
				t.Errorf("Version = %q, want %q", got, tc.want)
			}
		})
	}
	info := fromBuildInfo("v1.4.0", stamp)
	if info.Revision != "fc1fdcd1234567890abcdef" || !info.Modified || info.Time != "2026-12-03T16:12:00Z" {
		t.Errorf("vcs fields: %+v", info)
	}
	s := info.String()
	for _, want := range []string{"comfyfleet v1.4.0", "fc1fdcd12345+dirty", "2026-12-03T16:12:00Z", "go1.26.8"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, want it to contain %q", s, want)
		}
	}
}

func TestGetInTests(t *testing.T) {
	// A test binary has build info but no release version.
	if got := Get(); got.Version == "" || got.GoVersion == "" || got.Platform == "" {
		t.Errorf("Get() = %+v, want every field set", got)
	}
}
