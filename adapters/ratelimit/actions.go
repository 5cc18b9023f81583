package ratelimit

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/core"
)

// ActionLimiter asks the rate-limit service before each observer action
// (core.ActionLimiter), with the descriptor [(tenant, id), (action, kind)]
// in the configured domain, so per-action limits live with every other
// limit.
type ActionLimiter struct {
	conn    *grpc.ClientConn
	client  rlsv3.RateLimitServiceClient
	domain  string
	timeout time.Duration
}

var _ core.ActionLimiter = (*ActionLimiter)(nil)

// ActionLimiterOptions configures an ActionLimiter.
type ActionLimiterOptions struct {
	// Addr is the service's gRPC address; Domain its rate-limit domain.
	Addr, Domain string
	// Timeout bounds each decision (100ms when zero): past it the action
	// goes ahead (fail open).
	Timeout time.Duration
	// TLS returns the worker's mutual TLS towards the service (the
	// core's client certificate, the CA that signed the service's) for
	// each new connection: a renewed certificate is presented from the
	// next connection on. Required.
	TLS    func() *tls.Config
	Logger *slog.Logger
	// TracerProvider, when set, makes a client span of each decision
	// asked within a span (a traced observer job's) and sends its trace
	// context, which the service's server span continues.
	TracerProvider trace.TracerProvider
}

// NewActionLimiter connects (lazily) to the service over mutual TLS.
func NewActionLimiter(o ActionLimiterOptions) (*ActionLimiter, error) {
	if o.TLS == nil {
		return nil, fmt.Errorf("%w: the action limiter needs a client certificate", ErrTLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(clientCreds{o.TLS})}
	if o.TracerProvider != nil {
		opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(o.TracerProvider),
			otelgrpc.WithPropagators(propagation.TraceContext{}))))
	}
	conn, err := grpc.NewClient(o.Addr, opts...)
	if err != nil {
		return nil, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 100 * time.Millisecond
	}
	return &ActionLimiter{conn: conn, client: rlsv3.NewRateLimitServiceClient(conn), domain: o.Domain, timeout: timeout}, nil
}

// Close closes the connection.
func (l *ActionLimiter) Close() error { return l.conn.Close() }

// Allow implements core.ActionLimiter.
func (l *ActionLimiter) Allow(ctx context.Context, tenant, kind string) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := l.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: l.domain,
		Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{
			{Key: "tenant", Value: tenant}, {Key: "action", Value: kind},
		}}},
		HitsAddend: 1,
	})
	if err != nil {
		return true, 0, err
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		return true, 0, nil
	}
	wait := time.Second
	for _, s := range resp.GetStatuses() {
		if d := s.GetDurationUntilReset().AsDuration(); s.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT && d > 0 {
			wait = d
		}
	}
	return false, wait, nil
}
