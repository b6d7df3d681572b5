package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// runStages are the stages the gateway reports of a completed run
// (comfyfleet_task_stage_duration_seconds), in their order.
var runStages = [...]string{"submit", "queued", "execution", "collect", "finish"}

// stageSums are the gateway's stage histograms' sums and counts at one
// moment; the difference of two is what the runs between them spent.
type stageSums struct {
	sum   [len(runStages)]float64
	count [len(runStages)]uint64
	ok    bool
}

func (s stageSums) sub(o stageSums) stageSums {
	d := stageSums{ok: s.ok && o.ok}
	for i := range runStages {
		d.sum[i], d.count[i] = s.sum[i]-o.sum[i], s.count[i]-o.count[i]
	}
	return d
}

func (s stageSums) add(o stageSums) stageSums {
	d := stageSums{ok: s.ok && o.ok}
	for i := range runStages {
		d.sum[i], d.count[i] = s.sum[i]+o.sum[i], s.count[i]+o.count[i]
	}
	return d
}

// mean is stage i's mean per run; false when no run reported it.
func (s stageSums) mean(i int) (time.Duration, bool) {
	if !s.ok || s.count[i] == 0 {
		return 0, false
	}
	return time.Duration(s.sum[i] / float64(s.count[i]) * float64(time.Second)), true
}

// stageSums scrapes the gateway's /metrics for the stage histograms: on its
// metrics listener when it has one (profiles were asked for), else on its API
// listener as admin.
func (g *gateway) stageSums(ctx context.Context) (stageSums, error) {
	url := g.admin.base + "/metrics"
	if g.metricsAddr != "" {
		url = "http://" + g.metricsAddr + "/metrics"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return stageSums{}, err
	}
	req.Header.Set("Authorization", "Bearer "+g.admin.token)
	resp, err := g.e.hc.Do(req)
	if err != nil {
		return stageSums{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return stageSums{}, fmt.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return stageSums{}, fmt.Errorf("GET /metrics: %w", err)
	}
	var s stageSums
	fam := fams["comfyfleet_task_stage_duration_seconds"]
	if fam == nil {
		return s, nil // a gateway without the stages: not measured
	}
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != "stage" {
				continue
			}
			for i, name := range runStages {
				if l.GetValue() == name {
					s.sum[i], s.count[i] = m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	s.ok = true
	return s, nil
}
