package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fraise-dev/fraise/core"
)

// Metrics holds the core's HTTP metrics in a registry of its own, so several
// servers can live in one process (as in `fraise dev` and the tests).
type Metrics struct {
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

// NewMetrics returns metrics registered in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_http_requests_total", Help: "GraphQL HTTP requests by method (GET, POST, other) and status.",
		}, []string{"method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fraise_http_request_duration_seconds", Help: "GraphQL HTTP request latency by method (GET, POST, other).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method"}),
	}
	m.Registry.MustRegister(m.requests, m.duration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.errors = newErrorCounter(m.Registry)
	// Every core code starts at zero, so that a rate of errors by code has
	// a series from the start (and the first error is an increase).
	for _, c := range core.Codes() {
		m.errors.WithLabelValues("http", string(c))
	}
	return m
}

func (m *Metrics) observe(method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	method = methodLabel(method)
	m.requests.WithLabelValues(method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}

// methodLabel names a request's method for the metrics: the methods the
// GraphQL endpoint serves by name, every other one as "other". A client
// chooses the method, and each distinct label value is a series the core
// and Prometheus keep for good, so the values must not be the client's.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost:
		return method
	}
	return "other"
}

// Health tracks whether a process should receive traffic. On SIGTERM a
// process reports not-ready first, so load balancers stop sending before it
// drains.
type Health struct {
	draining atomic.Bool
	// Ready checks dependencies (the database); nil means always ready.
	Ready func(ctx context.Context) error
}

// Drain makes /readyz fail from now on.
func (h *Health) Drain() { h.draining.Store(true) }

// NewAdminHandler serves /healthz (the process is alive), /readyz (it can
// serve: not draining and its dependencies answer) and /metrics.
func NewAdminHandler(h *Health, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if h.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
			return
		}
		if h.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := h.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if metrics != nil {
		mux.Handle("/metrics", metrics)
	}
	return mux
}

// Handler returns the /metrics handler for m's registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
