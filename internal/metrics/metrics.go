// Package metrics is the gateway's Prometheus instrumentation: one registry
// per app (never the global default, so tests can run several apps in one
// process), the counters and histograms the components update through small
// hooks, and collectors that read the store, the fleet and the push hub at
// scrape time instead of keeping counts of their own.
//
// Counters and histograms are per replica: each replica counts what it did
// itself (the runs it drove, the requests it served), so sums across
// replicas are right. The store and fleet gauges (comfyfleet_tasks,
// comfyfleet_instance_*) show shared state: every replica reports the same
// values, so aggregate them with max, not sum.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/comfyfleet/comfyfleet/internal/buildinfo"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

// namespace prefixes every metric of the gateway.
const namespace = "comfyfleet"

// Requeue reasons the dispatcher reports, created at zero so rate() works
// before the first event.
var requeueReasons = []string{"instance_unreachable", "inputs_failed", "prompt_gone", "instance_lost", "prefetch_pulled_back", "lease_lost", "instance_incapable"}

// WebSocket drop reasons the push hub reports.
var dropReasons = []string{"send_buffer_overflow", "write_timeout", "ping_timeout"}

// failureTypes are the error types created at zero: the gateway's own and
// ComfyUI's common validation types. Others are added as they happen, up to
// maxFailureTypes.
var failureTypes = []string{
	task.ErrorTypeExecution, task.ErrorTypeTimeout, task.ErrorTypeInstanceLost, task.ErrorTypeInterrupted,
	task.ErrorTypeUpload, task.ErrorTypeOutput, "invalid_workflow",
	"prompt_outputs_failed_validation", "prompt_no_outputs", "invalid_prompt", "missing_node_type",
}

// maxFailureTypes bounds the type label: ComfyUI chooses the validation
// types, so past this many distinct values a new one counts as "other".
const maxFailureTypes = 64

// labelValue is what a type or reason reported by a component must look
// like to become a label value; anything else counts as "other".
var labelValue = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Histogram buckets, in seconds.
var (
	// dispatchBuckets: from an idle fleet (milliseconds) to a long queue (an hour).
	dispatchBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
	// runBuckets: from a tiny workflow to a long video render.
	runBuckets = []float64{.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	// stageBuckets: from a store step (a fraction of a millisecond) to a
	// long render's execution.
	stageBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// The stages of a run RunStage reports (dispatch.Stage* values).
var runStages = []string{"submit", "queued", "execution", "collect", "finish"}

// Metrics holds the registry and the metrics the components update. Its
// methods are the hooks; a nil *Metrics is not valid, components that may
// run without metrics take an interface and treat nil as no-op.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	dispatch prometheus.Histogram
	// run, requeues and drops are pre-curried children, read-only after New.
	run      map[task.Status]prometheus.Observer
	runVec   *prometheus.HistogramVec
	requeues map[string]prometheus.Counter
	reqVec   *prometheus.CounterVec
	drops    map[string]prometheus.Counter
	dropVec  *prometheus.CounterVec
	failures *prometheus.CounterVec
	switches prometheus.Counter
	deaf     prometheus.Counter
	suspect  prometheus.Counter
	pruned   map[string]prometheus.Counter
	pruneVec *prometheus.CounterVec
	// stages are stageVec's children, read-only after New.
	stages   map[string]prometheus.Observer
	stageVec *prometheus.HistogramVec
	http     *httpMetrics

	// failMu guards failTypes: the type label values seen so far.
	failMu    sync.RWMutex
	failTypes map[string]prometheus.Counter

	queued queueTimes
}

// New returns the gateway's metrics on a fresh registry, with the Go runtime,
// process and build info collectors. Scrape-time sources are added by Watch.
func New(log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "task_dispatch_latency_seconds",
			Help:    "Time from a task's creation, or its requeue, to its claim by an instance of this replica.",
			Buckets: dispatchBuckets,
		}),
		runVec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "task_run_duration_seconds",
			Help:    "Time from a run's start to the task's final status (outputs collected), by final status, for runs this replica drove.",
			Buckets: runBuckets,
		}, []string{"status"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "task_failures_total",
			Help: "Tasks this replica failed, by error type (task error.type).",
		}, []string{"type"}),
		reqVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "task_requeues_total",
			Help: "Runs this replica returned to the queue, by reason.",
		}, []string{"reason"}),
		dropVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ws_drops_total",
			Help: "WebSocket clients this replica disconnected for being too slow, by reason.",
		}, []string{"reason"}),
		switches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "checkpoint_switches_total",
			Help: "Runs this replica started on an instance that had last loaded another checkpoint (a model load); " +
				"against the count of task_dispatch_latency_seconds, the share of runs warm placement could not keep warm.",
		}),
		deaf: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "instance_socket_deaf_total",
			Help: "Instance WebSockets this replica reconnected because a submitted prompt was followed by no frame at all.",
		}),
		suspect: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "instance_interrupt_ignored_total",
			Help: "Runs whose instance still held the prompt a grace period after it was interrupted (the task was ended, the instance held).",
		}),
		pruneVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "retention_pruned_total",
			Help: "Finished tasks and files this replica deleted for retention, by kind (task, file).",
		}, []string{"kind"}),
		stageVec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "task_stage_duration_seconds",
			Help: "Where the time of a completed run this replica submitted went, by stage: submit (claim to ComfyUI's answer to POST /prompt), " +
				"queued (to the prompt's start there), execution (to its end), collect (outputs copied), finish (the store step that ends the task).",
			Buckets: stageBuckets,
		}, []string{"stage"}),
		http:      newHTTPMetrics(),
		failTypes: map[string]prometheus.Counter{},
		queued:    queueTimes{at: map[string]time.Time{}},
	}
	m.run = map[task.Status]prometheus.Observer{}
	for _, s := range []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
		m.run[s] = m.runVec.WithLabelValues(string(s))
	}
	m.requeues = children(m.reqVec, requeueReasons)
	m.drops = children(m.dropVec, dropReasons)
	m.pruned = children(m.pruneVec, []string{PrunedTask, PrunedFile})
	m.stages = make(map[string]prometheus.Observer, len(runStages))
	for _, s := range runStages {
		m.stages[s] = m.stageVec.WithLabelValues(s)
	}
	for _, typ := range failureTypes {
		m.failTypes[typ] = m.failures.WithLabelValues(typ)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		m.dispatch, m.runVec, m.failures, m.reqVec, m.dropVec, m.switches, m.deaf, m.suspect, m.pruneVec, m.stageVec, m.http.requests, m.http.duration,
		buildInfoGauge(buildinfo.Get()),
	)
	return m
}

// buildInfoGauge is comfyfleet_build_info: always 1, its labels say which
// build runs (join on it to see a fleet's versions during an upgrade).
func buildInfoGauge(bi buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels say which build of the gateway this replica runs.",
		ConstLabels: prometheus.Labels{
			"version": bi.Version, "revision": bi.ShortRevision(), "goversion": bi.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// children creates one child per value, so a hook pays a map read instead
// of hashing label values, and every series exists from the start.
func children(vec *prometheus.CounterVec, values []string) map[string]prometheus.Counter {
	out := make(map[string]prometheus.Counter, len(values))
	for _, v := range values {
		out[v] = vec.WithLabelValues(v)
	}
	return out
}

// Registry is the registry every metric of this app is on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format. A collector
// that fails (the store is unreachable) is logged and left out; the rest is
// still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog{m.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// errorLog adapts slog to promhttp's Logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Warn("metrics scrape error", "err", fmt.Sprint(v...))
}

// TaskClaimed records the dispatch latency of t, just claimed by this
// replica: from its requeue when this replica requeued it, else from its
// creation. A task requeued by another replica after a counted attempt
// (Attempts > 1) is left out rather than measured from its creation.
func (m *Metrics) TaskClaimed(t *task.Task) {
	since, ok := m.queued.take(t.ID)
	if !ok {
		if t.Attempts > 1 {
			return
		}
		since = t.CreatedAt
	}
	if t.StartedAt.IsZero() || since.IsZero() {
		return
	}
	m.dispatch.Observe(max(t.StartedAt.Sub(since), 0).Seconds())
}

// TaskFinished records the run duration of t, which reached a final status
// in a run this replica drove, and its failure type when it failed.
func (m *Metrics) TaskFinished(t *task.Task) {
	if obs, ok := m.run[t.Status]; ok && !t.StartedAt.IsZero() && !t.FinishedAt.IsZero() {
		obs.Observe(max(t.FinishedAt.Sub(t.StartedAt), 0).Seconds())
	}
	if t.Status == task.StatusFailed {
		typ := "unknown"
		if t.Error != nil {
			typ = t.Error.Type
		}
		m.failure(typ).Inc()
	}
}

// The kinds of Pruned.
const (
	PrunedTask = "task"
	PrunedFile = "file"
)

// Pruned counts n records of a kind (PrunedTask, PrunedFile) that this
// replica deleted for retention.
func (m *Metrics) Pruned(kind string, n int) {
	if c, ok := m.pruned[kind]; ok && n > 0 {
		c.Add(float64(n))
	}
}

// failure returns the counter of a failure type, adding the type while
// fewer than maxFailureTypes are known.
func (m *Metrics) failure(typ string) prometheus.Counter {
	m.failMu.RLock()
	c, ok := m.failTypes[typ]
	m.failMu.RUnlock()
	if ok {
		return c
	}
	if !labelValue.MatchString(typ) {
		typ = "other"
	}
	m.failMu.Lock()
	defer m.failMu.Unlock()
	if c, ok := m.failTypes[typ]; ok {
		return c
	}
	if len(m.failTypes) >= maxFailureTypes {
		typ = "other"
	}
	c = m.failures.WithLabelValues(typ)
	m.failTypes[typ] = c
	return c
}

// TaskRequeued counts a run this replica returned to the queue, and
// remembers when, for the dispatch latency of its next claim.
func (m *Metrics) TaskRequeued(t *task.Task, reason string) {
	m.counterFor(m.requeues, m.reqVec, reason).Inc()
	at := t.UpdatedAt
	if at.IsZero() {
		at = time.Now()
	}
	m.queued.put(t.ID, at)
}

// CheckpointSwitched counts a run that makes its instance load a model.
func (m *Metrics) CheckpointSwitched() { m.switches.Inc() }

// SocketDeaf counts an instance WebSocket reconnected for being deaf.
func (m *Metrics) SocketDeaf() { m.deaf.Inc() }

// InstanceSuspect counts a run whose instance ignored its interrupt.
func (m *Metrics) InstanceSuspect() { m.suspect.Inc() }

// RunStage records how long a completed run spent in one of its stages.
// An unknown stage is not recorded: the stages are the whole label set.
func (m *Metrics) RunStage(stage string, d time.Duration) {
	if o, ok := m.stages[stage]; ok {
		o.Observe(d.Seconds())
	}
}

// WSDropped counts a WebSocket client disconnected for being too slow.
func (m *Metrics) WSDropped(reason string) {
	m.counterFor(m.drops, m.dropVec, reason).Inc()
}

// counterFor returns the pre-curried child of a known value, or the child
// of "other": the known values are the whole label set.
func (m *Metrics) counterFor(known map[string]prometheus.Counter, vec *prometheus.CounterVec, value string) prometheus.Counter {
	if c, ok := known[value]; ok {
		return c
	}
	return vec.WithLabelValues("other")
}

// queueTimes remembers when this replica requeued tasks, until their next
// claim. It is bounded: a task requeued here and claimed by another replica
// would otherwise stay forever.
type queueTimes struct {
	// mu guards at.
	mu sync.Mutex
	at map[string]time.Time
}

// Bounds of queueTimes: past maxQueueTimes entries, those older than
// queueTimeTTL are dropped, and a new one is not kept if that is not enough.
const (
	maxQueueTimes = 10000
	queueTimeTTL  = time.Hour
)

func (q *queueTimes) put(id string, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.at) >= maxQueueTimes {
		cutoff := time.Now().Add(-queueTimeTTL)
		for k, t := range q.at {
			if t.Before(cutoff) {
				delete(q.at, k)
			}
		}
		if len(q.at) >= maxQueueTimes {
			return
		}
	}
	q.at[id] = at
}

func (q *queueTimes) take(id string) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	at, ok := q.at[id]
	delete(q.at, id)
	return at, ok
}
