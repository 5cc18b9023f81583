package flightsvc

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/core"
)

// metrics counts Flight calls by method and gRPC code, times them, and
// counts the rows and bytes exports send.
type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rows     prometheus.Counter
	bytes    prometheus.Counter
	errors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_flight_calls_total", Help: "Flight calls by method and gRPC code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fraise_flight_call_duration_seconds", Help: "Flight call latency; for DoGet, the whole export.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 60, 300},
		}, []string{"method"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fraise_flight_exported_rows_total", Help: "Rows DoGet streamed.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fraise_flight_exported_bytes_total", Help: "Arrow bytes DoGet streamed.",
		}),
	}
	reg.MustRegister(m.calls, m.duration, m.rows, m.bytes)
	m.errors = errorCounter(reg)
	// Every core code starts at zero, so that a rate of errors by code has
	// a series from the start.
	for _, c := range core.Codes() {
		m.errors.WithLabelValues("flight", string(c))
	}
	return m
}

// errorCounter returns fraise_errors_total, registered in reg: every
// transport of a process counts into the one metric, by its transport
// label, so whichever registers it first creates it (the HTTP handler
// shares the core's registry).
func errorCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fraise_errors_total",
		Help: "Errors answered at each transport's edge, by transport and code.",
	}, []string{"transport", "code"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.CounterVec)
		}
		panic(err) // a different metric of the same name: a programming error
	}
	return c
}

// failed counts an error the edge answered with code.
func (m *metrics) failed(code string) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues("flight", code).Inc()
}

func (m *metrics) observe(fullMethod string, err error, d time.Duration) {
	if m == nil {
		return
	}
	method := fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
	m.calls.WithLabelValues(method, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}

func (m *metrics) exported(rows, bytes int64) {
	if m == nil {
		return
	}
	m.rows.Add(float64(rows))
	m.bytes.Add(float64(bytes))
}
