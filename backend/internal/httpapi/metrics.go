package httpapi

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/exportstream/exportstream/backend/internal/eventmux"
	"github.com/exportstream/exportstream/backend/internal/job"
	"github.com/exportstream/exportstream/backend/internal/store"
	"github.com/exportstream/exportstream/backend/internal/worker"
)

// metrics are the backend's Prometheus series, on a registry of their own
// so that several servers in one test process do not collide.
type metrics struct {
	registry      *prometheus.Registry
	streamsOpened prometheus.Counter
	streamsActive prometheus.Gauge
	eventsSent    prometheus.Counter
}

var statuses = []job.Status{job.StatusPending, job.StatusInProgress, job.StatusCompleted, job.StatusFailed, job.StatusCancelled}

func newMetrics(st store.Store, pool *worker.Pool, mux *eventmux.Hub) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		streamsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exportstream_backend_event_streams_opened_total",
			Help: "Event streams (GET /v1/exports/{code}/events) opened.",
		}),
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "exportstream_backend_event_streams_active",
			Help: "Event streams open now.",
		}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exportstream_backend_events_sent_total",
			Help: "Job events written to event streams.",
		}),
	}
	m.registry.MustRegister(m.streamsOpened, m.streamsActive, m.eventsSent, jobsCollector{st},
		// go_goroutines, process_open_fds, process_resident_memory_bytes…
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "exportstream_backend_queue_depth",
			Help: "Accepted exports waiting for a worker.",
		}, func() float64 { return float64(pool.QueueDepth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "exportstream_backend_mux_streams_open",
			Help: "Multiplexed event streams (GET /v1/events) open on this replica.",
		}, func() float64 { return float64(mux.Streams()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "exportstream_backend_mux_streams_opened_total",
			Help: "Multiplexed event streams opened on this replica.",
		}, func() float64 { return float64(mux.Opened()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "exportstream_backend_mux_subscribed_total",
			Help: "Subscriptions started on this replica's multiplexed streams (a replacement counts).",
		}, func() float64 { return float64(mux.Subscribed()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "exportstream_backend_mux_subscriptions_active",
			Help: "Subscriptions held by this replica's multiplexed event streams.",
		}, func() float64 { return float64(mux.Subscriptions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "exportstream_backend_mux_pending_events",
			Help: "Events of multiplexed streams waiting for a slow reader (at most one per subscription).",
		}, func() float64 { return float64(mux.Pending()) }),
	)
	return m
}

// GenerationHistogram is the generation duration histogram; the worker
// pool observes it through its OnFinish hook, so it is built before both.
func GenerationHistogram() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "exportstream_backend_generation_duration_seconds",
		Help:    "Time from a worker taking an export to its end, by final status.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14), // 50 ms … ~7 min
	}, []string{"status"})
}

// ObserveGeneration adapts h to worker.Config.OnFinish.
func ObserveGeneration(h *prometheus.HistogramVec) func(job.Status, time.Duration) {
	return func(s job.Status, d time.Duration) { h.WithLabelValues(string(s)).Observe(d.Seconds()) }
}

// Register adds extra collectors (the generation histogram) to /metrics.
func (s *Server) Register(c prometheus.Collector) { s.metrics.registry.MustRegister(c) }

// jobsCollector counts jobs by status when scraped.
type jobsCollector struct{ st store.Store }

var jobsDesc = prometheus.NewDesc("exportstream_backend_jobs", "Jobs held, by status.", []string{"status"}, nil)

func (jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

// With the store unreachable it reports no samples (unknown), not zeros.
func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	byStatus, _, err := c.st.Stats(context.Background())
	if err != nil {
		return
	}
	for _, s := range statuses {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(byStatus[s]), strings.ToUpper(string(s)))
	}
}
