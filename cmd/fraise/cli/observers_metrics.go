package cli

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/core/observe"
)

// observerMetrics is observe.Metrics with Prometheus: the observer
// pipeline's counters and gauges on the core's /metrics. The names and
// labels are docs/metrics.md's, which the alert rules in
// deploy/observability read.
type observerMetrics struct {
	jobs                *prometheus.CounterVec
	deliveryLogFailures prometheus.Counter
	enqueued            prometheus.Counter
	degraded            prometheus.Gauge
}

var _ observe.Metrics = (*observerMetrics)(nil)

// newObserverMetrics returns the pipeline's metrics, not yet registered.
func newObserverMetrics() *observerMetrics {
	m := &observerMetrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_observer_jobs_total", Help: "Observer jobs run by this process, by outcome.",
		}, []string{"outcome"}),
		deliveryLogFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fraise_observer_delivery_log_failures_total",
			Help: "Observer job outcomes this process could not record in their rule's recent deliveries (the deliveries themselves went on).",
		}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fraise_observer_enqueued_total", Help: "Jobs this process's dispatcher enqueued.",
		}),
		degraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fraise_observer_degraded", Help: "1 while the dispatcher cannot reach the queue and holds its cursor.",
		}),
	}
	// Every outcome is exposed from the start, at 0: an alert on
	// increase() sees its first job, not a series appearing.
	for _, o := range []string{observe.OutcomeDelivered, observe.OutcomeRetried, observe.OutcomeDeferred, observe.OutcomeDeadLettered} {
		m.jobs.WithLabelValues(o)
	}
	return m
}

func (m *observerMetrics) JobRun(outcome string) { m.jobs.WithLabelValues(outcome).Inc() }
func (m *observerMetrics) DeliveryLogFailed()    { m.deliveryLogFailures.Inc() }
func (m *observerMetrics) Enqueued(n int)        { m.enqueued.Add(float64(n)) }
func (m *observerMetrics) Degraded(on bool) {
	if on {
		m.degraded.Set(1)
	} else {
		m.degraded.Set(0)
	}
}

// register exposes m on reg, with the gauges read from p at each scrape
// (the outbox's backlog, whether the queue answers), each within a second.
func (m *observerMetrics) register(reg prometheus.Registerer, p *observe.Pipeline) error {
	backlog := func() observe.Backlog {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return p.Backlog(ctx)
	}
	cs := []prometheus.Collector{
		m.jobs, m.deliveryLogFailures, m.enqueued, m.degraded,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fraise_observer_outbox_oldest_age_seconds",
			Help: "How long the oldest event behind the dispatcher's cursor has waited (0 when none waits, -1 when unknown).",
		}, func() float64 { return backlog().OldestAge.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fraise_observer_outbox_pending", Help: "Events behind the dispatcher's cursor (-1 when unknown).",
		}, func() float64 { return float64(backlog().Pending) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fraise_redis_up", Help: "1 when the observers' Redis answers a ping within a second, at scrape time.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if p.QueueUp(ctx) {
				return 1
			}
			return 0
		}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
