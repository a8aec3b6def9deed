package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the BFF's Prometheus series; they also implement relay.Stats.
type Metrics struct {
	Registry          *prometheus.Registry
	upstreamsOpened   prometheus.Counter
	upstreamsActive   prometheus.Gauge
	upstreamConnects  prometheus.Counter
	subscribersActive prometheus.Gauge
	eventsRelayed     prometheus.Counter
	snapshotsDropped  prometheus.Counter
	slowDisconnects   prometheus.Counter
	streamsMax        prometheus.Gauge
}

// NewMetrics registers the BFF's series on a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		upstreamsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exportstream_bff_upstreams_opened_total", Help: "Relayed jobs: one upstream per job code, however many subscribers.",
		}),
		upstreamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "exportstream_bff_upstreams_active", Help: "Job codes relayed now.",
		}),
		upstreamConnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "exportstream_bff_upstream_connections_total", Help: "Backend event-stream connections made; past one per upstream, they are reconnects.",
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
	m.streamsMax = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "exportstream_bff_streams_max", Help: "Browser event streams this process admits before 503: MAX_STREAMS, or what its open-file limit allows.",
	})
	m.Registry.MustRegister(m.streamsMax, m.upstreamsOpened, m.upstreamsActive, m.upstreamConnects, m.subscribersActive, m.eventsRelayed, m.snapshotsDropped, m.slowDisconnects,
		// go_goroutines, process_open_fds, process_resident_memory_bytes…:
		// what the soak and hostile-client tests watch for leaks.
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// UpstreamOpened implements relay.Stats.
func (m *Metrics) UpstreamOpened() { m.upstreamsOpened.Inc(); m.upstreamsActive.Inc() }

// UpstreamClosed implements relay.Stats.
func (m *Metrics) UpstreamClosed() { m.upstreamsActive.Dec() }

// SnapshotDropped implements relay.Stats.
func (m *Metrics) SnapshotDropped() { m.snapshotsDropped.Inc() }

// UpstreamConnected implements relay.Stats.
func (m *Metrics) UpstreamConnected() { m.upstreamConnects.Inc() }
