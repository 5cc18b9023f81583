package cli

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fraise-dev/fraise/adapters/httpapi"
)

// newProcessRegistry returns a registry of its own for one component (so
// several live in one process, as in `fraise dev`) holding the Go
// runtime's and the process's collectors, as the core's and extauthz's do.
func newProcessRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveAdmin serves a component's admin port on ln until ctx ends:
// /healthz, /readyz (ready while the component runs) and /metrics of reg.
func serveAdmin(ctx context.Context, component string, ln net.Listener, reg *prometheus.Registry, log *slog.Logger) error {
	h := httpapi.NewAdminHandler(&httpapi.Health{}, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	logServing(log, component, "admin", ln)
	return serveHTTP(ctx, newHTTPServer(h, adminHTTPTimeouts), ln, 5*time.Second)
}

// upGauge is a gauge that pings at each scrape: 1 when ping answers
// within a second, else 0. The alerts on PostgreSQL and Redis being down
// read it (deploy/observability).
func upGauge(name, help string, ping func(context.Context) error) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if ping(ctx) != nil {
			return 0
		}
		return 1
	})
}
