package httpapi

import "github.com/prometheus/client_golang/prometheus"

// metrics are the backend's Prometheus series, on a registry of its own so
// that several servers in one test process do not collide.
type metrics struct {
	registry      *prometheus.Registry
	streamsOpened prometheus.Counter
	streamsActive prometheus.Gauge
	eventsSent    prometheus.Counter
}

func newMetrics() *metrics {
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
	m.registry.MustRegister(m.streamsOpened, m.streamsActive, m.eventsSent)
	return m
}
