package app

import (
	"context"
	"net/http"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/health"
	"github.com/comfyfleet/comfyfleet/internal/instance"
)

// comfyProber probes an instance with GET /system_stats and GET /prompt,
// over one shared HTTP client for the whole fleet.
type comfyProber struct{ hc *http.Client }

func newProber() comfyProber {
	return comfyProber{hc: &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 2, IdleConnTimeout: 5 * time.Minute,
	}}}
}

// Probe implements health.Prober.
func (p comfyProber) Probe(ctx context.Context, in instance.Instance) (health.Result, error) {
	c := comfy.New(in.BaseURL(), "health", p.hc)
	stats, err := c.SystemStats(ctx)
	if err != nil {
		return health.Result{}, err
	}
	queue, err := c.QueueRemaining(ctx)
	if err != nil {
		return health.Result{}, err
	}
	res := health.Result{QueueRemaining: queue}
	res.Device.ComfyUIVersion = stats.System.ComfyUIVersion
	if len(stats.Devices) > 0 {
		d := stats.Devices[0]
		res.Device.Name, res.Device.Type = d.Name, d.Type
		res.Device.VRAMTotal, res.Device.VRAMFree = d.VRAMTotal, d.VRAMFree
	}
	return res, nil
}
