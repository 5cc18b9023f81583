package admission

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts admission decisions and times queue waits, for every
// class, in one set of metrics labelled by class: the names the alert and
// recording rules of deploy/observability and docs/metrics.md use.
type Metrics struct {
	decisions *prometheus.CounterVec
	wait      *prometheus.HistogramVec
}

// NewMetrics registers the admission metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_admission_decisions_total",
			Help: "Admission decisions by class (graphql, flight, observers), result (admitted, waited, refused) and refusal reason.",
		}, []string{"class", "result", "reason"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fraise_admission_wait_seconds", Help: "Time work spent in the admission queue, by class.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"class"}),
	}
	// Every class's refusal reasons and admissions start at zero, so that
	// the alert on the share of refusals (deploy/observability) sees the
	// first one of a class that has refused nothing yet.
	// The wait histogram too: a class that has not queued yet still
	// exports it (docs/metrics.md lists it; TestMetricsDocumented scrapes).
	for _, c := range Classes {
		m.wait.WithLabelValues(string(c))
		m.decisions.WithLabelValues(string(c), string(Admitted), "")
		for _, r := range []Reason{ReasonQueueFull, ReasonTenantQueueFull, ReasonTimeout, ReasonTenantTimeout,
			ReasonOverloaded, ReasonMemory, ReasonCanceled} {
			m.decisions.WithLabelValues(string(c), string(Refused), string(r))
		}
	}
	reg.MustRegister(m.decisions, m.wait)
	return m
}

// Observe records d; Build makes it every controller's Options.Observe.
func (m *Metrics) Observe(d Decision) {
	m.decisions.WithLabelValues(string(d.Class), string(d.Result), string(d.Reason)).Inc()
	if d.Wait > 0 {
		m.wait.WithLabelValues(string(d.Class)).Observe(d.Wait.Seconds())
	}
}
