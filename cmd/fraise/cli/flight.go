package cli

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"runtime/debug"

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
func newFlightServer(cfg config.Config, sec *secrets, log *slog.Logger, db *postgres.DB, schema *graphql.Schema, verifier *assertion.Verifier, reg prometheus.Registerer, tp *sdktrace.TracerProvider, admit core.Admitter) (*grpc.Server, func(), error) {
	g, exp, err := flightServer(cfg, sec, log, db, schema, verifier, reg, tp, admit)
	if err != nil {
		return nil, nil, err
	}
	return g, exp.Close, nil
}

func flightServer(cfg config.Config, sec *secrets, log *slog.Logger, db *postgres.DB, schema *graphql.Schema, verifier *assertion.Verifier, reg prometheus.Registerer, tp *sdktrace.TracerProvider, admit core.Admitter) (*grpc.Server, *postgres.Exporter, error) {
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
		MaxSnapshots:     cfg.Admission.Flight.MaxConcurrent, MaxSnapshotsPerTenant: cfg.Admission.Flight.MaxConcurrentPerTenant,
	})
	flog := log.With("component", "flight")
	app := flight.NewService(flight.ServiceOptions{
		Catalog: catalog, Tickets: tickets, Source: exp, Partitioner: exp,
		// The flight class of the process's one admission ([admission.flight]).
		Admitter: admit, MaxParts: cfg.Admission.Flight.MaxConcurrentPerTenant,
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
	if cfg.Server.TLS {
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

// buildVersion is the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}
