package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the BFF's Prometheus series; they also implement relay.Stats.
type Metrics struct {
	Registry          *prometheus.Registry
	jobsRelayed       prometheus.Counter
	jobsActive        prometheus.Gauge
	upstreamConnects  prometheus.Counter
	upstreamsOpen     prometheus.Gauge
	subscribersActive prometheus.Gauge
	sessionStreams    prometheus.Counter
	eventsRelayed     prometheus.Counter
	snapshotsDropped  prometheus.Counter
	slowDisconnects   prometheus.Counter
	streamStalls      prometheus.Counter
	streamsMax        prometheus.Gauge
}

// NewMetrics registers the BFF's series on a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		jobsRelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exportstream_bff_relayed_jobs_total", Help: "Jobs subscribed on the backend's stream: one per session and code, however many browser streams follow it.",
		}),
		jobsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "exportstream_bff_relayed_jobs_active", Help: "Jobs relayed now.",
		}),
		upstreamConnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exportstream_bff_upstream_connections_total", Help: "Connections made to the backend's multiplexed event stream; past the first, they are reconnects.",
		}),
		upstreamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "exportstream_bff_upstream_connections_open", Help: "Connections open to the backend's multiplexed event stream: 1 while it is reachable, whatever the number of users.",
		}),
		subscribersActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "exportstream_bff_subscribers_active", Help: "Browser event streams open now.",
		}),
		eventsRelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exportstream_bff_events_relayed_total", Help: "Events written to browser streams.",
		}),
	}
	m.snapshotsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "exportstream_bff_snapshots_dropped_total", Help: "Progress snapshots dropped for slow browsers (a newer one replaced them).",
	})
	m.slowDisconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "exportstream_bff_slow_disconnects_total", Help: "Browser streams cut off because writes stayed blocked past the write timeout.",
	})
	m.streamStalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "exportstream_bff_stream_stalls_total", Help: "Stream writes that found a browser's socket full and waited for it (a slow reader or network).",
	})
	m.streamsMax = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "exportstream_bff_streams_max", Help: "Browser event streams this process admits before 503: MAX_STREAMS, or what its open-file limit allows.",
	})
	m.sessionStreams = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "exportstream_bff_session_streams_opened_total", Help: "Session event streams (GET /api/events) accepted: one per browser, not per tab, when the client shares it across tabs.",
	})
	m.Registry.MustRegister(m.sessionStreams, m.streamStalls, m.streamsMax, m.jobsRelayed, m.jobsActive, m.upstreamConnects, m.upstreamsOpen, m.subscribersActive, m.eventsRelayed, m.snapshotsDropped, m.slowDisconnects,
		// go_goroutines, process_open_fds, process_resident_memory_bytes…:
		// what the soak and hostile-client tests watch for leaks.
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// TopicOpened implements relay.Stats.
func (m *Metrics) TopicOpened() { m.jobsRelayed.Inc(); m.jobsActive.Inc() }

// TopicClosed implements relay.Stats.
func (m *Metrics) TopicClosed() { m.jobsActive.Dec() }

// SnapshotDropped implements relay.Stats.
func (m *Metrics) SnapshotDropped() { m.snapshotsDropped.Inc() }

// UpstreamConnected implements relay.Stats.
func (m *Metrics) UpstreamConnected() { m.upstreamConnects.Inc(); m.upstreamsOpen.Inc() }

// UpstreamDisconnected implements relay.Stats.
func (m *Metrics) UpstreamDisconnected() { m.upstreamsOpen.Dec() }
