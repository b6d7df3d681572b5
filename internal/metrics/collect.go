package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// Sources are read at every scrape; a nil field leaves its metrics out.
type Sources struct {
	// Tasks counts tasks by status (store.Store.TaskCounts).
	Tasks func(ctx context.Context) (map[task.Status]int, error)
	// Instances lists the configured instances with their state (fleet.Fleet.Views).
	Instances func(ctx context.Context) ([]fleet.View, error)
	// WSClients is the number of WebSocket clients of this replica (push.Hub.Clients).
	WSClients func() int
}

// scrapeTimeout bounds the store reads of one scrape.
const scrapeTimeout = 5 * time.Second

// Watch registers the collectors that read src at every scrape. Call it
// once, when the components exist.
func (m *Metrics) Watch(src Sources) {
	if src.Tasks != nil || src.Instances != nil {
		m.reg.MustRegister(newStateCollector(src))
	}
	if src.WSClients != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ws_clients",
			Help: "WebSocket clients connected to this replica.",
		}, func() float64 { return float64(src.WSClients()) }))
	}
}

// stateCollector turns the store's task counts and the fleet's views into
// gauges at scrape time, so there is no second count to drift.
type stateCollector struct {
	src                  Sources
	tasks                *prometheus.Desc
	alive, busy, enabled *prometheus.Desc
}

func newStateCollector(src Sources) *stateCollector {
	inst := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "instance", name), help, []string{"instance_id"}, nil)
	}
	return &stateCollector{
		src: src,
		tasks: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "tasks"),
			"Tasks in the store by status (pending is the queue depth); shared by every replica.", []string{"status"}, nil),
		alive:   inst("alive", "1 when the instance passes its health checks; shared by every replica."),
		busy:    inst("busy", "1 when the instance runs a task or ComfyUI's own queue holds others' prompts; shared by every replica."),
		enabled: inst("enabled", "1 when the instance may be given tasks; shared by every replica."),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tasks
	ch <- c.alive
	ch <- c.busy
	ch <- c.enabled
}

// Collect implements prometheus.Collector: one store read for the tasks and
// one fleet read for the instances. A failed read becomes an invalid metric,
// which the handler logs and leaves out.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if c.src.Tasks != nil {
		c.collectTasks(ctx, ch)
	}
	if c.src.Instances != nil {
		c.collectInstances(ctx, ch)
	}
}

func (c *stateCollector) collectTasks(ctx context.Context, ch chan<- prometheus.Metric) {
	counts, err := c.src.Tasks(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.tasks, fmt.Errorf("count tasks: %w", err))
		return
	}
	for _, s := range task.AllStatuses {
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

func (c *stateCollector) collectInstances(ctx context.Context, ch chan<- prometheus.Metric) {
	views, err := c.src.Instances(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.alive, fmt.Errorf("list instances: %w", err))
		return
	}
	for _, v := range views {
		ch <- prometheus.MustNewConstMetric(c.alive, prometheus.GaugeValue, b2f(v.Alive), v.ID)
		ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, b2f(v.Busy), v.ID)
		ch <- prometheus.MustNewConstMetric(c.enabled, prometheus.GaugeValue, b2f(v.Enabled), v.ID)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
