package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fraise-dev/fraise/adapters/flightsvc"
	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/secretfile"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// newFlightServer wires the Flight service: the catalog of exportable
// datasets from fraise.toml, bound to the GraphQL schema (a dataset over a
// GraphQL type exports its fields with their @auth and @mask), the ticket
// key, and PostgreSQL as the source. The ticket key and the port's
// certificates are read through sec: a new ticket key in its file signs
// the next ticket, the previous one still redeeming those it signed. Call
// the returned close, before closing db, once the server has stopped: it
// ends the snapshots held for parallel exports.
func newFlightServer(cfg config.Config, sec *secrets, log *slog.Logger, db *postgres.DB, schema *graphql.Schema, verifier *assertion.Verifier, reg prometheus.Registerer, tp *sdktrace.TracerProvider) (*grpc.Server, func(), error) {
	g, exp, err := flightServer(cfg, sec, log, db, schema, verifier, reg, tp)
	if err != nil {
		return nil, nil, err
	}
	return g, exp.Close, nil
}

func flightServer(cfg config.Config, sec *secrets, log *slog.Logger, db *postgres.DB, schema *graphql.Schema, verifier *assertion.Verifier, reg prometheus.Registerer, tp *sdktrace.TracerProvider) (*grpc.Server, *postgres.Exporter, error) {
	ds, err := cfg.Flight.FlightDatasets()
	if err != nil {
		return nil, nil, err
	}
	catalog, err := flight.NewCatalog(ds, schema)
	if err != nil {
		return nil, nil, fmt.Errorf("flight.datasets: %w", err)
	}
	key := make([]byte, 32)
	var keyRef *secretfile.Value[string]
	if cfg.Flight.TicketKey != "" {
		v, err := sec.text("flight.ticket_key", cfg.Flight.TicketKey)
		if err != nil {
			return nil, nil, err
		}
		keyRef, key = v, []byte(v.Get())
	} else if _, err := rand.Read(key); err != nil {
		return nil, nil, fmt.Errorf("flight.ticket_key: %w", err)
	}
	tickets, err := flight.NewTickets(key, cfg.Flight.TicketTTL.Duration, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("flight.ticket_key: %w", err)
	}
	if keyRef != nil {
		keyRef.OnChange(func(k string) {
			if err := tickets.Rotate([]byte(k)); err != nil {
				log.Error("flight.ticket_key changed but not rotated; tickets keep being signed with the previous key", "err", err)
				return
			}
			log.Info("flight ticket key rotated")
		})
	}
	// A snapshot of a parallel export holds a connection idle until its
	// parts begin: as many as may run, and a tenant's share of them.
	exp := postgres.NewExporter(db, postgres.ExportOptions{
		StatementTimeout: cfg.Flight.StatementTimeout.Duration,
		MaxSnapshots:     cfg.Flight.MaxExports, MaxSnapshotsPerTenant: cfg.Flight.MaxExportsPerTenant,
	})
	flog := log.With("component", "flight")
	app := flight.NewService(flight.ServiceOptions{
		Catalog: catalog, Tickets: tickets, Source: exp, Partitioner: exp,
		Admitter: flightAdmitter(cfg), MaxParts: cfg.Flight.MaxExportsPerTenant,
		Batch:  flight.BatchLimits{Rows: cfg.Flight.BatchRows, Bytes: cfg.Flight.BatchBytes},
		Logger: flog,
	})
	svc := flightsvc.New(flightsvc.Options{
		Verifier: verifier, Service: app,
		Logger: flog, Version: buildVersion(), Metrics: reg,
	})
	// Calls continue the trace Envoy started, in the core's spans (tp), as
	// the HTTP port's requests do.
	opts := append(svc.ServerOptions(), grpcTracing(tp)...)
	if cfg.Core.TLS {
		tc, err := sec.serverTLS(cfg.TLS, false, cfg.TLS.GatewaySAN)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	g := grpc.NewServer(opts...)
	svc.Register(g)
	return g, exp, nil
}

// flightAdmitter admits Flight exports, each of which holds a pooled
// connection for its whole length: at most flight.max_exports run at once,
// more wait their turn (until the client gives up), and one tenant runs or
// waits for at most flight.max_exports_per_tenant, more being refused at
// once (RATE_LIMITED) so that a tenant whose clients read slowly cannot
// keep the others waiting. A tenant's share counts its waiting exports,
// which one admission.Controller cannot express (its tenant bound counts
// running requests, and a tenant at it queues): so two, the tenant's share
// taken first with no queue, then the global bound with an unbounded one.
// Neither checks memory, as exports never did.
func flightAdmitter(cfg config.Config) core.Admitter {
	noMemoryCheck := uint64(math.MaxUint64)
	tenants := admission.New(admission.Options{MaxPerTenant: cfg.Flight.MaxExportsPerTenant,
		MemoryLimit: noMemoryCheck, RetryAfter: cfg.Admission.RetryAfter.Duration})
	global := admission.New(admission.Options{MaxConcurrent: cfg.Flight.MaxExports, MaxQueue: math.MaxInt,
		MemoryLimit: noMemoryCheck, RetryAfter: cfg.Admission.RetryAfter.Duration})
	return admitterChain{tenants, global}
}

// admitterChain admits through each in turn, releasing in reverse.
type admitterChain []core.Admitter

func (as admitterChain) Admit(ctx context.Context, tenant string) (func(), error) {
	releases := make([]func(), 0, len(as))
	release := func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}
	for _, a := range as {
		r, err := a.Admit(ctx, tenant)
		if err != nil {
			release()
			return nil, err
		}
		releases = append(releases, r)
	}
	return release, nil
}

// serveGRPC serves g on ln until ctx ends, then stops gracefully within
// grace and forcibly after: a running export is cut rather than awaited.
func serveGRPC(ctx context.Context, g *grpc.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		g.Stop()
	}
	<-errc
	return nil
}

// buildVersion is the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}
