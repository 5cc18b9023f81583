package ratelimit

import (
	"strings"
	"sync"

	gostats "github.com/lyft/gostats"
	"github.com/prometheus/client_golang/prometheus"
)

// statsBridge is envoyproxy/ratelimit's own stats (a gostats store) as
// Prometheus metrics. The library's Prometheus sink is not used: it
// registers in the process-wide default registry (two services in one
// process, as in the tests and `fraise dev`, collide), serves its own
// port on http.DefaultServeMux, and names counters without _total and
// timers in milliseconds. Here the store is flushed on each scrape, so
// what is scraped is current, and each gostats name is mapped to a
// Prometheus family with bounded labels: the domain and the descriptor
// path are the configuration's (tier names, descriptor keys and the
// values the configuration names), never a request's values, because
// Fraise's generated configuration sets no detailed_metric.
type statsBridge struct {
	store gostats.Store
	sink  *statsSink
	mu    sync.Mutex // one flush at a time
}

// statsSink accumulates what the store flushes: counters arrive as deltas
// since the last flush, gauges as values, timers as each sample.
type statsSink struct {
	mu       sync.Mutex
	series   map[string]*series // by family and label values
	response *prometheus.HistogramVec
}

type series struct {
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	labels []string
	value  float64
}

var (
	descRateLimit = func(stat string) *prometheus.Desc {
		return prometheus.NewDesc("ratelimit_service_rate_limit_"+stat+"_total",
			"envoyproxy/ratelimit's "+stat+" count per configured descriptor path (ratelimit.service.rate_limit.DOMAIN.PATH."+stat+").",
			[]string{"domain", "descriptor"}, nil)
	}
	rateLimitStats = map[string]*prometheus.Desc{}
	descCallErrors = prometheus.NewDesc("ratelimit_service_should_rate_limit_errors_total",
		"ShouldRateLimit calls that failed, by type: redis_error (the limiter's Redis failed), service_error.",
		[]string{"type"}, nil)
	descConfigLoads = prometheus.NewDesc("ratelimit_service_config_loads_total",
		"Loads of the limits configuration, by result (success, error: the previous limits stay).", []string{"result"}, nil)
	descGlobalShadow = prometheus.NewDesc("ratelimit_service_global_shadow_mode_total",
		"Requests over a limit that global shadow mode let through.", nil, nil)
	descServerRequests = prometheus.NewDesc("ratelimit_server_requests_total",
		"gRPC requests to the rate limiter, by method.", []string{"grpc_method"}, nil)
)

// rateLimitStatNames are the per-descriptor counters the library keeps.
var rateLimitStatNames = []string{"total_hits", "over_limit", "near_limit", "over_limit_with_local_cache", "within_limit", "shadow_mode"}

// rateLimitStatOf is rateLimitStats the other way round.
var rateLimitStatOf = map[*prometheus.Desc]string{}

func init() {
	for _, s := range rateLimitStatNames {
		rateLimitStats[s] = descRateLimit(s)
		rateLimitStatOf[rateLimitStats[s]] = s
	}
}

func newStatsBridge() *statsBridge {
	sink := &statsSink{
		series: map[string]*series{},
		response: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ratelimit_server_response_time_seconds",
			Help: "Time the rate limiter took to answer, by gRPC method (the library measures whole milliseconds).",
			// The library rounds down to whole milliseconds: 0 is "under one".
			Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"grpc_method"}),
	}
	// Series whose labels are known in advance start at zero, so that an
	// alert's rate() sees the first error.
	for _, z := range []struct {
		desc   *prometheus.Desc
		labels []string
	}{
		{descConfigLoads, []string{"success"}}, {descConfigLoads, []string{"error"}},
		{descCallErrors, []string{"redis_error"}}, {descCallErrors, []string{"service_error"}},
		{descGlobalShadow, nil},
	} {
		sink.add(z.desc, prometheus.CounterValue, z.labels, 0, true)
	}
	return &statsBridge{store: gostats.NewStore(sink, false), sink: sink}
}

// Describe sends nothing: the bridge is an unchecked collector, its
// families known only once the library has named its stats.
func (b *statsBridge) Describe(chan<- *prometheus.Desc) {}

// Collect flushes the store and sends every series seen so far.
func (b *statsBridge) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	b.store.Flush()
	b.mu.Unlock()
	b.sink.mu.Lock()
	for _, s := range b.sink.series {
		ch <- prometheus.MustNewConstMetric(s.desc, s.kind, s.value, s.labels...)
	}
	b.sink.mu.Unlock()
	b.sink.response.Collect(ch)
}

// FlushCounter implements gostats.Sink: value is the increase since the
// last flush.
func (s *statsSink) FlushCounter(name string, value uint64) {
	desc, labels, ok := mapCounter(name)
	if !ok {
		return
	}
	if _, perDescriptor := rateLimitStatOf[desc]; perDescriptor {
		// A descriptor's first stat brings its others, at zero: the
		// over-limit count exists before the first refusal.
		for _, d := range rateLimitStats {
			s.add(d, prometheus.CounterValue, labels, 0, true)
		}
	}
	s.add(desc, prometheus.CounterValue, labels, float64(value), true)
}

// FlushGauge implements gostats.Sink. The library's gauges (its Go
// runtime's, its local cache's) are not exported: the process collector
// covers the first, and the second counts since start in gauges.
func (s *statsSink) FlushGauge(string, uint64) {}

// FlushTimer implements gostats.Sink: the server's response time, in
// milliseconds.
func (s *statsSink) FlushTimer(name string, value float64) {
	rest, ok := strings.CutPrefix(name, "ratelimit_server.")
	if method, ok2 := strings.CutSuffix(rest, ".response_time"); ok && ok2 {
		s.response.WithLabelValues(method).Observe(value / 1000)
	}
}

func (s *statsSink) add(desc *prometheus.Desc, kind prometheus.ValueType, labels []string, v float64, delta bool) {
	key := desc.String() + "\xff" + strings.Join(labels, "\xff")
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.series[key]
	if !ok {
		se = &series{desc: desc, kind: kind, labels: labels}
		s.series[key] = se
	}
	if delta {
		se.value += v
	} else {
		se.value = v
	}
}

// mapCounter returns the family and label values of the gostats counter
// name, false for the stats not exported (the Go runtime's, which the
// process collector covers).
func mapCounter(name string) (*prometheus.Desc, []string, bool) {
	switch name {
	case "ratelimit.service.config_load_success":
		return descConfigLoads, []string{"success"}, true
	case "ratelimit.service.config_load_error":
		return descConfigLoads, []string{"error"}, true
	case "ratelimit.service.global_shadow_mode":
		return descGlobalShadow, nil, true
	case "ratelimit.service.call.should_rate_limit.redis_error":
		return descCallErrors, []string{"redis_error"}, true
	case "ratelimit.service.call.should_rate_limit.service_error":
		return descCallErrors, []string{"service_error"}, true
	}
	if rest, ok := strings.CutPrefix(name, "ratelimit_server."); ok {
		if method, ok := strings.CutSuffix(rest, ".total_requests"); ok {
			return descServerRequests, []string{method}, true
		}
		return nil, nil, false
	}
	rest, ok := strings.CutPrefix(name, "ratelimit.service.rate_limit.")
	if !ok {
		return nil, nil, false
	}
	// DOMAIN.PATH.STAT; the domain has no dot (Fraise's is "fraise").
	// DOMAIN.domain_not_found is not exported: its domain is the
	// request's, and Fraise's callers only name the configured one.
	domain, path, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, nil, false
	}
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return nil, nil, false
	}
	desc, ok := rateLimitStats[path[i+1:]]
	if !ok {
		return nil, nil, false
	}
	return desc, []string{domain, path[:i]}, true
}
