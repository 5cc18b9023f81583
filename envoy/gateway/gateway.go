// Package gateway is the development gateway: it executes the part of the
// generated Envoy configuration that Fraise uses (mTLS listener, early
// header removal, ext_authz, rate limiting, routing and mTLS proxying), so
// that development and end-to-end tests run the production configuration
// on machines where Envoy cannot be installed. It has no configuration of
// its own; docs/envoy.md lists what it does not implement.
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/fraise-dev/fraise/envoy"
)

// Options configures the gateway's own behaviour (only logging: what it
// does comes from the resources).
type Options struct {
	Logger *slog.Logger
}

// Gateway executes one set of generated resources.
type Gateway struct {
	p      *plan
	log    *slog.Logger
	authz  authv3.AuthorizationClient
	rls    rlsv3.RateLimitServiceClient
	conns  []*grpc.ClientConn
	uplink map[string]*httputil.ReverseProxy
}

// New prepares res for execution: it dials extauthz and the rate limiter
// once (connections are reused by every request) and builds one proxy per
// upstream cluster.
func New(res *envoy.Resources, o Options) (*Gateway, error) {
	p, err := compile(res)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{p: p, log: o.Logger, uplink: map[string]*httputil.ReverseProxy{}}
	dial := func(cluster string) (*grpc.ClientConn, error) {
		c, ok := p.clusters[cluster]
		if !ok {
			return nil, fmt.Errorf("gateway: unknown cluster %q", cluster)
		}
		conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
		if err != nil {
			return nil, err
		}
		g.conns = append(g.conns, conn)
		return conn, nil
	}
	if p.authz != nil {
		conn, err := dial(p.authz.cluster)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.authz = authv3.NewAuthorizationClient(conn)
	}
	if p.rl != nil {
		conn, err := dial(p.rl.cluster)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.rls = rlsv3.NewRateLimitServiceClient(conn)
	}
	for _, r := range p.routes {
		if r.cluster == "" || g.uplink[r.cluster] != nil {
			continue
		}
		c, ok := p.clusters[r.cluster]
		if !ok {
			g.Close()
			return nil, fmt.Errorf("gateway: route %s names unknown cluster %q", r.name, r.cluster)
		}
		g.uplink[r.cluster] = newProxy(c, g.log)
	}
	return g, nil
}

// Close releases the gRPC connections.
func (g *Gateway) Close() {
	for _, c := range g.conns {
		c.Close()
	}
}

// Serve serves TLS connections from ln until ctx ends, then drains for up
// to ten seconds.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	defer g.Close()
	srv := &http.Server{
		Handler:           g,
		TLSConfig:         g.p.tls.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var propagator = propagation.TraceContext{}

// ServeHTTP runs one request through the filter chain as Envoy would.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	g.stripHeaders(r.Header)
	if r.Header.Get("x-request-id") == "" {
		r.Header.Set("x-request-id", newRequestID())
	}
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := otel.Tracer("fraise/gateway").Start(ctx, "ingress "+r.Method)
	defer span.End()
	r = r.WithContext(ctx)
	propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	isGRPC := strings.HasPrefix(r.Header.Get("content-type"), "application/grpc")

	rt := g.match(r.URL.Path, isGRPC)
	if rt == nil || rt.direct != nil {
		status, body := http.StatusNotFound, ""
		if rt != nil {
			status, body = rt.direct.status, rt.direct.body
		}
		g.localReply(w, isGRPC, status, body, nil, false)
		g.logRequest(r, status, start)
		return
	}
	respHeaders := http.Header{}
	if g.authz != nil {
		status, ok := g.checkAuthz(w, r, rt, isGRPC, respHeaders)
		if !ok {
			g.logRequest(r, status, start)
			return
		}
	}
	if g.rls != nil {
		status, ok := g.checkRateLimit(w, r, rt, isGRPC, respHeaders)
		if !ok {
			g.logRequest(r, status, start)
			return
		}
	}
	if rt.timeout > 0 {
		c, cancel := context.WithTimeout(r.Context(), rt.timeout)
		defer cancel()
		r = r.WithContext(c)
	}
	rec := &statusRecorder{ResponseWriter: w, extra: respHeaders}
	g.uplink[rt.cluster].ServeHTTP(rec, r)
	g.logRequest(r, rec.status, start)
}

func (g *Gateway) logRequest(r *http.Request, status int, start time.Time) {
	g.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("request_id", r.Header.Get("x-request-id")), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Int("status", status), slog.Duration("duration", time.Since(start)))
}

// stripHeaders removes what the early header mutation removes: nothing a
// client sends under x-fraise-* survives to ext_authz or the core.
func (g *Gateway) stripHeaders(h http.Header) {
	for k := range h {
		lk := strings.ToLower(k)
		for _, p := range g.p.stripPrefixes {
			if strings.HasPrefix(lk, p) {
				delete(h, k)
			}
		}
		for _, e := range g.p.stripExact {
			if lk == e {
				delete(h, k)
			}
		}
	}
}

func (g *Gateway) match(path string, isGRPC bool) *route {
	for i := range g.p.routes {
		rt := &g.p.routes[i]
		if rt.grpcOnly && !isGRPC {
			continue
		}
		if strings.HasPrefix(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// localReply answers from the gateway itself. As Envoy does, a gRPC client
// gets a trailers-only response whose grpc-status maps the HTTP status, and
// an HTTP client gets the local reply mapper's body for the status.
func (g *Gateway) localReply(w http.ResponseWriter, isGRPC bool, status int, body string, headers http.Header, resourceExhausted bool) {
	for k, vs := range headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if isGRPC {
		code := grpcStatusOf(status)
		if resourceExhausted {
			code = 8 // RESOURCE_EXHAUSTED
		}
		w.Header().Del("content-length")
		w.Header().Set("content-type", "application/grpc")
		w.Header().Set("grpc-status", fmt.Sprint(code))
		w.Header().Set("grpc-message", http.StatusText(status))
		w.WriteHeader(http.StatusOK)
		return
	}
	contentType := "text/plain"
	for _, lr := range g.p.localReplies {
		if lr.status == status {
			body = lr.body
			if lr.contentType != "" {
				contentType = lr.contentType
			}
		}
	}
	if w.Header().Get("content-type") == "" {
		if strings.HasPrefix(body, "{") {
			contentType = "application/json"
		}
		w.Header().Set("content-type", contentType)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// grpcStatusOf is Envoy's HTTP-to-gRPC status mapping for local replies.
func grpcStatusOf(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// readBody buffers up to max bytes of the body for ext_authz and puts it
// back for the upstream. A larger body without partial messages is 413, as
// Envoy's buffer limit answers.
func readBody(r *http.Request, max uint32) ([]byte, bool, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		return nil, false, err
	}
	complete := len(buf) <= int(max)
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	if !complete {
		buf = buf[:max]
	}
	return buf, complete, nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	extra  http.Header
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.wrote = true
		s.status = code
		for k, vs := range s.extra {
			for _, v := range vs {
				s.Header().Add(k, v)
			}
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes flushes through, which gRPC streams need.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer (trailers).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
