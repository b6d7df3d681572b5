package bench

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// comfyFleet is what the overhead scenario runs against: the ComfyUI
// servers of Options.Comfy, or one simulated instance.
type comfyFleet struct {
	// bases are the instances' base URLs, in order.
	bases []string
	// sims is the simulated instance; nil for real servers.
	sims *sims
	// pids are the ComfyUI server processes on this machine, whose CPU
	// time is read.
	pids []int
	// about describes each instance: URL, version, process.
	about []string
	// outputDir is Options.ComfyOutputDir.
	outputDir string
}

// overheadFleet starts a simulated instance, or looks up the real servers:
// their version, and their processes when they run on this machine.
func (e *env) overheadFleet(ctx context.Context) (*comfyFleet, error) {
	if len(e.opts.Comfy) == 0 {
		s, err := startSims(1, comfysim.Options{})
		if err != nil {
			return nil, err
		}
		return &comfyFleet{bases: s.urls(), sims: s,
			about: []string{s.urls()[0] + ": simulated (comfysim), in the bench process"}}, nil
	}
	bases, err := comfyBases(e.opts.Comfy)
	if err != nil {
		return nil, err
	}
	fl := &comfyFleet{bases: bases, pids: e.opts.ComfyPIDs, outputDir: e.opts.ComfyOutputDir}
	for _, base := range bases {
		line, pids, err := e.describeComfy(ctx, base, len(e.opts.ComfyPIDs) == 0)
		if err != nil {
			return nil, err
		}
		fl.about = append(fl.about, line)
		fl.pids = append(fl.pids, pids...)
	}
	if len(e.opts.ComfyPIDs) > 0 {
		fl.about = append(fl.about, fmt.Sprintf("ComfyUI processes measured: %s (given)", joinInts(e.opts.ComfyPIDs)))
	}
	return fl, nil
}

// describeComfy reads an instance's version from GET /system_stats and,
// with find, the processes listening on its port.
func (e *env) describeComfy(ctx context.Context, base string, find bool) (string, []int, error) {
	var stats struct {
		System struct {
			Version string `json:"comfyui_version"`
		} `json:"system"`
	}
	if err := e.getJSON(ctx, base+"/system_stats", &stats); err != nil {
		return "", nil, fmt.Errorf("ComfyUI at %s: %w", base, err)
	}
	line := base + ": ComfyUI " + cmp.Or(stats.System.Version, "(version not reported)")
	if !find {
		return line, nil, nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, err
	}
	pids, err := localListeners(ctx, "/proc", u.Host)
	switch {
	case err != nil:
		e.logf("find the process of %s: %v", base, err)
		return line + ", process not found: its CPU is not measured", nil, nil
	case len(pids) == 0:
		return line + ", not a process of this machine: its CPU is not measured", nil, nil
	}
	return line + ", pid " + joinInts(pids) + " (found by its listening port)", pids, nil
}

// gatewaySpec is the gateway in front of every instance.
func (fl *comfyFleet) gatewaySpec() gatewaySpec {
	spec := gatewaySpec{label: "overhead"}
	if fl.sims != nil {
		spec.ports = fl.sims.ports()
		return spec
	}
	for _, b := range fl.bases {
		spec.addrs = append(spec.addrs, strings.TrimPrefix(b, "http://"))
	}
	spec.outputDir = fl.outputDir
	return spec
}

// simulated reports whether the instance is simulated in the bench process.
func (fl *comfyFleet) simulated() bool { return fl.sims != nil }

func (fl *comfyFleet) close() {
	if fl.sims != nil {
		fl.sims.close()
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
