package cli

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/internal/lifecycle"
)

// The commands are compositions of internal/lifecycle components: each
// owns its listeners and resources, opened before anything serves and
// closed once on every path (docs/architecture.md, "Wiring").

// adminGrace bounds the drain of an admin or JWKS port: probes and scrapes
// are short.
const adminGrace = 5 * time.Second

// drainMargin is what a group's drain deadline adds to the time its
// servers bound their own drains with.
const drainMargin = 5 * time.Second

// serving returns the log of a server starting on its listener: the
// "listening" line operators and the end-to-end tests read.
func serving(log *slog.Logger, component, what string) func(net.Listener) {
	return func(ln net.Listener) { logServing(log, component, what, ln) }
}

// adminServer is a component's admin port on l: /healthz, /readyz (ready
// while it runs) and /metrics of reg.
func adminServer(component string, l *lifecycle.Listener, reg *prometheus.Registry, log *slog.Logger) lifecycle.Component {
	return lifecycle.Func{
		OnOpen:  l.Open,
		OnRun:   func(ctx context.Context) error { return serveAdmin(ctx, component, l.Net(), reg, log) },
		OnClose: l.Close,
	}
}

// stopLine is c whose Run ends with the component's stop line: what it
// drained, and how long since it was told to stop.
type stopLine struct {
	lifecycle.Component
	log     *slog.Logger
	name    string
	drained *[]string
}

// Run runs the component and logs its stop line.
func (s stopLine) Run(ctx context.Context) error {
	took := stopClock(ctx)
	err := s.Component.Run(ctx)
	logStopped(s.log, s.name, *s.drained, took(), err)
	return err
}

// listenerOf is the component owning a listener bound by the caller (a
// test, or `fraise dev` before it knew its ports), nil when ln is.
func listenerOf(ln net.Listener) *lifecycle.Listener {
	if ln == nil {
		return nil
	}
	return lifecycle.Adopt(ln)
}

// optionalListener is a listener on addr, nil when addr is "" (the port
// is off).
func optionalListener(key, addr string) *lifecycle.Listener {
	if addr == "" {
		return nil
	}
	return lifecycle.Listen(key, addr)
}

// runner is a component with only a Run, for the loops of a command
// (config watches, key reloads) that hold nothing to release.
func runner(run func(ctx context.Context)) lifecycle.Component {
	return lifecycle.Func{OnRun: func(ctx context.Context) error { run(ctx); return nil }}
}

// later is a component built as it opens, from what the components opened
// before it have made concrete (`fraise dev` builds its parts once their
// ports are bound).
type later struct {
	build func() lifecycle.Component
	c     lifecycle.Component
}

// Open builds the component and opens it.
func (l *later) Open(ctx context.Context) error {
	l.c = l.build()
	return l.c.Open(ctx)
}

// Run runs the component.
func (l *later) Run(ctx context.Context) error { return l.c.Run(ctx) }

// Close closes the component, if it was built.
func (l *later) Close() error {
	if l.c == nil {
		return nil
	}
	return l.c.Close()
}
