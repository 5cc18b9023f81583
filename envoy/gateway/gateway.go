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
	"path"
	"strings"
	"sync"
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
		g.uplink[r.cluster] = newProxy(c, g.log, g.upstreamFailed)
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
	if g.p.maxConns > 0 {
		ln = &limitListener{Listener: ln, sem: make(chan struct{}, g.p.maxConns)}
	}
	srv := &http.Server{
		Handler:           g,
		TLSConfig:         g.p.tls.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    g.p.maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: g.p.maxStreams},
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

// limitListener closes connections over the limit at once, as Envoy's
// connection_limit filter does (without its optional delay).
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			c.Close()
		}
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

var propagator = propagation.TraceContext{}

// ServeHTTP runs one request through the filter chain as Envoy would.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	isGRPC := strings.HasPrefix(r.Header.Get("content-type"), "application/grpc")
	if n := headerCount(r); n > g.p.maxHeaders {
		g.localReply(w, isGRPC, http.StatusRequestHeaderFieldsTooLarge, "", nil, false, "")
		g.logRequest(r, http.StatusRequestHeaderFieldsTooLarge, start)
		return
	}
	if !g.normalizePath(r) {
		g.localReply(w, isGRPC, http.StatusBadRequest, "", nil, false, "")
		g.logRequest(r, http.StatusBadRequest, start)
		return
	}
	// What the connection manager does before any filter: the early header
	// mutation, the request id, x-forwarded-for with the peer address
	// (use_remote_address), x-forwarded-proto.
	g.stripHeaders(r.Header)
	internal := g.forwarded(r)
	// An edge (external) request's id is replaced; an internal one's kept.
	if !internal || r.Header.Get("x-request-id") == "" {
		r.Header.Set("x-request-id", newRequestID())
	}
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := otel.Tracer("fraise/gateway").Start(ctx, "ingress "+r.Method)
	defer span.End()
	r = r.WithContext(ctx)
	propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))

	rt := g.match(r.URL.Path, isGRPC)
	if rt == nil {
		g.localReply(w, isGRPC, http.StatusNotFound, "", nil, false, "")
		g.logRequest(r, http.StatusNotFound, start)
		return
	}
	respHeaders := http.Header{}
	if g.authz != nil && !rt.noAuthz {
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
	if rt.direct != nil {
		for k, vs := range respHeaders {
			w.Header()[k] = vs
		}
		g.localReply(w, isGRPC, rt.direct.status, rt.direct.body, nil, false, "")
		g.logRequest(r, rt.direct.status, start)
		return
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

// headerCount counts header lines as Envoy's max_headers_count does.
func headerCount(r *http.Request) int {
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	return n
}

// normalizePath applies the connection manager's path settings: an escaped
// slash is refused, then dot segments are resolved (normalize_path) and
// repeated slashes merged (merge_slashes). It returns false to refuse.
func (g *Gateway) normalizePath(r *http.Request) bool {
	if g.p.rejectEscaped {
		raw := strings.ToLower(r.URL.EscapedPath())
		if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
			return false
		}
	}
	p := r.URL.Path
	if g.p.mergeSlashes {
		for strings.Contains(p, "//") {
			p = strings.ReplaceAll(p, "//", "/")
		}
	}
	if g.p.normalizePath && p != "" {
		trailing := strings.HasSuffix(p, "/")
		p = path.Clean("/" + p)
		if trailing && p != "/" {
			p += "/"
		}
	}
	if p != r.URL.Path {
		r.URL.Path, r.URL.RawPath = p, ""
	}
	return true
}

// forwarded sets the headers Envoy's connection manager sets with
// use_remote_address: the peer's address appended to x-forwarded-for,
// x-forwarded-proto https, and x-envoy-internal when the request is
// internal (x-forwarded-for holds one address, in internal_address_config)
// or x-envoy-external-address otherwise. It reports whether the request is
// internal.
func (g *Gateway) forwarded(r *http.Request) bool {
	r.Header.Del("x-envoy-internal")
	r.Header.Del("x-envoy-external-address")
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	single := len(r.Header.Values("x-forwarded-for")) == 0
	if xff := strings.Join(r.Header.Values("x-forwarded-for"), ","); xff != "" {
		r.Header.Set("x-forwarded-for", xff+","+host)
	} else {
		r.Header.Set("x-forwarded-for", host)
	}
	r.Header.Set("x-forwarded-proto", "https")
	internal := false
	if ip := net.ParseIP(host); ip != nil && single {
		for _, n := range g.p.internal {
			if n.Contains(ip) {
				internal = true
			}
		}
	}
	if internal {
		r.Header.Set("x-envoy-internal", "true")
	} else {
		r.Header.Set("x-envoy-external-address", host)
	}
	return internal
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
		if rt.path != "" && path == rt.path || rt.path == "" && strings.HasPrefix(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// localReply answers from the gateway itself. As Envoy does, a gRPC client
// gets a trailers-only response whose grpc-status maps the HTTP status, and
// an HTTP client gets the local reply mapper's body for the status.
//
// flag is the response flag Envoy would set on the reply, which mappers
// may match: envoy.FlagExtAuthz for ext_authz's denials and errors, "" otherwise.
func (g *Gateway) localReply(w http.ResponseWriter, isGRPC bool, status int, body string, headers http.Header, resourceExhausted bool, flag string) {
	for k, vs := range headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	contentType := "text/plain"
	for _, lr := range g.p.localReplies {
		if lr.matches(status, flag) {
			if lr.hasBody {
				body = lr.body
			}
			if lr.contentType != "" {
				contentType = lr.contentType
			}
			for _, hv := range lr.headers {
				applyHeader(w.Header(), hv)
			}
			break // Envoy applies the first mapper that matches
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
		if body != "" {
			w.Header().Set("grpc-message", grpcPercentEncode(body))
		}
		w.WriteHeader(http.StatusOK)
		return
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

// grpcPercentEncode encodes a grpc-message as the gRPC spec (and Envoy)
// does: bytes outside printable ASCII, and '%', as %XX.
func grpcPercentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
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
