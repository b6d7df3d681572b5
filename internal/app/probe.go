package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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

// probeEvery is how often ProbeWork asks for its prompt's history.
const probeEvery = 250 * time.Millisecond

// ProbeWork implements health.WorkProber: it submits workflow (nil: a small
// image that needs no model) with fresh seeds and waits until ComfyUI's
// history says how it ended. A run that does not end within ctx is
// removed from ComfyUI's queue or interrupted.
func (p comfyProber) ProbeWork(ctx context.Context, in instance.Instance, workflow []byte) error {
	prompt, err := probePrompt(workflow)
	if err != nil {
		return err
	}
	c := comfy.New(in.BaseURL(), "comfyfleet-probe", p.hc)
	res, err := c.Submit(ctx, comfy.SubmitParams{Prompt: prompt})
	if err != nil {
		return fmt.Errorf("probe workflow: %w", err)
	}
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		h, err := c.History(ctx, res.PromptID)
		switch {
		case err == nil && h.Succeeded():
			return nil
		case err == nil:
			if e, ok := h.ErrorMessage(); ok {
				return fmt.Errorf("probe workflow failed: %w", e)
			}
			return fmt.Errorf("probe workflow ended with status %q", h.Status.StatusStr)
		case ctx.Err() != nil:
		case !errors.Is(err, comfy.ErrNotInHistory):
			return fmt.Errorf("probe workflow: %w", err)
		}
		select {
		case <-ctx.Done():
			p.abandon(c, res.PromptID)
			return errors.New("probe workflow did not finish within healthCheck.probeTimeout")
		case <-tick.C:
		}
	}
}

// abandon takes a probe prompt that ran out of time off its instance:
// removed if still queued, interrupted if it runs.
func (p comfyProber) abandon(c *comfy.Client, promptID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.DeleteQueued(ctx, promptID)
	_ = c.Interrupt(ctx, promptID)
}

// defaultProbe is the probe workflow when none is configured: an image
// previewed, which needs no model; its color changes every time.
const defaultProbe = `{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},` +
	` "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}`

// probePrompt is workflow (nil: defaultProbe) made new for ComfyUI's cache:
// every literal seed and noise_seed input, and the color of an EmptyImage,
// get a random value.
func probePrompt(workflow []byte) (json.RawMessage, error) {
	if workflow == nil {
		workflow = []byte(defaultProbe)
	}
	var nodes map[string]struct {
		ClassType string                     `json:"class_type"`
		Inputs    map[string]json.RawMessage `json:"inputs"`
		Meta      json.RawMessage            `json:"_meta,omitempty"`
	}
	if err := json.Unmarshal(workflow, &nodes); err != nil {
		return nil, fmt.Errorf("probe workflow: %w", err)
	}
	for _, n := range nodes {
		for name, v := range n.Inputs {
			if !isNumber(v) {
				continue
			}
			switch {
			case name == "seed" || name == "noise_seed":
				n.Inputs[name] = json.RawMessage(fmt.Sprint(rand.Int64N(1 << 53)))
			case name == "color" && n.ClassType == "EmptyImage":
				n.Inputs[name] = json.RawMessage(fmt.Sprint(rand.IntN(1 << 24)))
			}
		}
	}
	return json.Marshal(nodes)
}

// isNumber reports whether v is a JSON number (not a link or a string).
func isNumber(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9')
}
