package xds

import (
	"context"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts what the server publishes and what Envoys make of it:
// a NACK (a request carrying error_detail) means an Envoy refused a
// snapshot and keeps running the previous one.
type metrics struct {
	published *prometheus.CounterVec
	lastTime  prometheus.Gauge
	streams   prometheus.Gauge
	requests  *prometheus.CounterVec
	nacks     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_xds_snapshots_total",
			Help: "Snapshots offered to Publish, by result (published; refused: invalid or inconsistent, the last good one keeps serving).",
		}, []string{"result"}),
		lastTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fraise_xds_snapshot_published_timestamp_seconds",
			Help: "When the snapshot now served was published (Unix time).",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fraise_xds_streams_open",
			Help: "Discovery streams open (one per connected Envoy on ADS).",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_xds_requests_total",
			Help: "Discovery requests received, by resource type (listener, route, cluster, secret, other).",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_xds_nacks_total",
			Help: "Discovery requests that refused the last response (NACK), by resource type.",
		}, []string{"type"}),
	}
	// Every series starts at zero, so that an alert's increase() sees the
	// first NACK or refusal.
	for _, r := range []string{"published", "refused"} {
		m.published.WithLabelValues(r)
	}
	for _, t := range []string{"listener", "route", "cluster", "secret", "other"} {
		m.requests.WithLabelValues(t)
		m.nacks.WithLabelValues(t)
	}
	return m
}

// Collectors returns the server's metrics, for the caller's registry
// (docs/metrics.md lists them).
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.published, m.lastTime, m.streams, m.requests, m.nacks}
}

func (m *metrics) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			m.streams.Inc()
			return nil
		},
		StreamClosedFunc: func(int64, *corev3.Node) { m.streams.Dec() },
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			t := resourceType(r.GetTypeUrl())
			m.requests.WithLabelValues(t).Inc()
			if r.GetErrorDetail() != nil {
				m.nacks.WithLabelValues(t).Inc()
			}
			return nil
		},
	}
}

func (m *metrics) publish(err error, now time.Time) {
	if err != nil {
		m.published.WithLabelValues("refused").Inc()
		return
	}
	m.published.WithLabelValues("published").Inc()
	m.lastTime.Set(float64(now.UnixNano()) / 1e9)
}

// resourceType names a type URL by a bounded label: an Envoy chooses the
// URLs it asks for.
func resourceType(url string) string {
	switch {
	case strings.HasSuffix(url, ".Listener"):
		return "listener"
	case strings.HasSuffix(url, ".RouteConfiguration"):
		return "route"
	case strings.HasSuffix(url, ".Cluster"):
		return "cluster"
	case strings.HasSuffix(url, ".Secret"):
		return "secret"
	}
	return "other"
}
