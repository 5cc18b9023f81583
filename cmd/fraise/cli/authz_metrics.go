package cli

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz"
)

// authzMetrics is extauthz's /metrics: what it decided, how fast, and
// which policy decides. Labels are bounded (result, status, credential
// kind, operation class); who was refused is the decision log's business.
type authzMetrics struct {
	reg      *prometheus.Registry
	checks   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	cached   prometheus.Counter
	dryRun   prometheus.Counter
	reloads  *prometheus.CounterVec
	revision *prometheus.GaugeVec
	errors   *prometheus.CounterVec

	mu      sync.Mutex // orders revision updates
	current string
}

func newAuthzMetrics() *authzMetrics {
	m := &authzMetrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_authz_checks_total",
			Help: "Checks by result (allow, deny, error), HTTP status answered, credential kind (jwt, apikey, none) and operation class.",
		}, []string{"result", "status", "kind", "op"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fraise_authz_check_duration_seconds",
			Help: "Time a Check took inside extauthz, by result.",
			// Envoy's authz timeout is 250 ms by default; most checks take
			// well under a millisecond.
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"result"}),
		cached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fraise_authz_decision_cache_hits_total",
			Help: "Checks whose policy decision came from the decision cache.",
		}),
		dryRun: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fraise_authz_dry_run_allowed_total",
			Help: "Requests the policy denied and dry-run mode allowed anyway.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_authz_policy_reloads_total",
			Help: "Attempts to load a new policy revision, by result (loaded, rejected: it failed to compile or its tests failed, and the previous one kept serving).",
		}, []string{"result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fraise_authz_policy_info",
			Help: "1 for the policy revision being served.",
		}, []string{"revision"}),
		// The name and help of the core's, whose transports count into it
		// too (adapters/httpapi, adapters/flightsvc).
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_errors_total",
			Help: "Errors answered at each transport's edge, by transport and code.",
		}, []string{"transport", "code"}),
	}
	// Every core code starts at zero, as the core's transports' do.
	for _, c := range core.Codes() {
		m.errors.WithLabelValues("extauthz", string(c))
	}
	// Both results start at zero, so that an alert's increase() sees the
	// first rejected policy.
	m.reloads.WithLabelValues("loaded")
	m.reloads.WithLabelValues("rejected")
	m.reg.MustRegister(m.checks, m.duration, m.cached, m.dryRun, m.reloads, m.revision, m.errors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe is extauthz.Options.Observe.
func (m *authzMetrics) observe(o extauthz.Outcome) {
	kind := string(o.Kind)
	if kind == "" {
		kind = "none"
	}
	m.checks.WithLabelValues(o.Result, strconv.Itoa(o.Status), kind, o.Op).Inc()
	m.duration.WithLabelValues(o.Result).Observe(o.Latency.Seconds())
	if o.Code != "" {
		m.errors.WithLabelValues("extauthz", string(o.Code)).Inc()
	}
	if o.Cached {
		m.cached.Inc()
	}
	if o.DryRun {
		m.dryRun.Inc()
	}
}

// observeReload is extauthz.Options.ObserveReload.
func (m *authzMetrics) observeReload(revision string, err error) {
	if err != nil {
		m.reloads.WithLabelValues("rejected").Inc()
		return
	}
	m.reloads.WithLabelValues("loaded").Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current != "" {
		m.revision.DeleteLabelValues(m.current)
	}
	m.current = revision
	m.revision.WithLabelValues(revision).Set(1)
}

func (m *authzMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
