package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/gateway"
)

// authz is a real ext_authz gRPC server whose answer each test chooses.
type authz struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	last   *authv3.CheckRequest
	answer func(*authv3.CheckRequest) *authv3.CheckResponse
}

func (a *authz) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.mu.Lock()
	a.last = r
	f := a.answer
	a.mu.Unlock()
	return f(r), nil
}

func (a *authz) lastRequest() *authv3.CheckRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func allowAs(tenant string) func(*authv3.CheckRequest) *authv3.CheckResponse {
	return func(*authv3.CheckRequest) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{{
					Header:       &corev3.HeaderValue{Key: "x-fraise-tenant", Value: tenant},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
				}},
				HeadersToRemove: []string{"authorization"},
			}},
		}
	}
}

// rls is a real RateLimitService server.
type rls struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu   sync.Mutex
	over bool
	last *rlsv3.RateLimitRequest
}

func (s *rls) ShouldRateLimit(ctx context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = r
	code := rlsv3.RateLimitResponse_OK
	if s.over {
		code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	return &rlsv3.RateLimitResponse{OverallCode: code, ResponseHeadersToAdd: []*corev3.HeaderValue{
		{Key: "RateLimit-Remaining", Value: "0"}, {Key: "Retry-After", Value: "7"},
	}}, nil
}

func serveGRPC(tb testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	register(g)
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	return ln.Addr().String()
}

func deadAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type upstreamSeen struct {
	mu      sync.Mutex
	headers http.Header
}

type fixture struct {
	gw      string
	upAddr  string
	certs   devcerts.Files
	authz   *authz
	rls     *rls
	seen    *upstreamSeen
	client  *http.Client
	tlsConf *tls.Config
}

func serverTLS(tb testing.TB, f devcerts.Files) *tls.Config {
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(f.CACert)
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

func clientTLS(tb testing.TB, f devcerts.Files, withCert bool) *tls.Config {
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(f.CACert)
	pool.AppendCertsFromPEM(pem)
	c := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if withCert {
		cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
		if err != nil {
			tb.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// mustGateway starts a gateway over upstreams the test controls. mod may
// change the generated options (to point a cluster at a dead address).
func mustGateway(tb testing.TB, mod func(*envoy.Options)) *fixture {
	tb.Helper()
	f := &fixture{authz: &authz{answer: allowAs("tenant-a")}, rls: &rls{}, seen: &upstreamSeen{}}
	dir := tb.TempDir()
	var err error
	if f.certs, err = devcerts.Generate(filepath.Join(dir, "certs"), devcerts.Options{}); err != nil {
		tb.Fatal(err)
	}
	authzAddr := serveGRPC(tb, func(g *grpc.Server) { authv3.RegisterAuthorizationServer(g, f.authz) })
	rlsAddr := serveGRPC(tb, func(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, f.rls) })

	// The core's HTTP port: mTLS, records what reached it.
	upLn, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS(tb, f.certs))
	if err != nil {
		tb.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.seen.mu.Lock()
		f.seen.headers = r.Header.Clone()
		f.seen.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("content-type", "application/json")
		fmt.Fprintf(w, `{"data":{"echo":%q}}`, body)
	})}
	go func() { _ = up.Serve(upLn) }()
	tb.Cleanup(func() { up.Close() })

	// The core's Flight port: a gRPC server-streaming method with trailers.
	flightAddr := serveGRPC(tb, func(g *grpc.Server) { g.RegisterService(&streamDesc, streamer{}) },
		grpc.Creds(credentials.NewTLS(serverTLS(tb, f.certs))))

	o := envoy.Options{
		ListenAddr: "127.0.0.1:0", CoreHTTPAddr: upLn.Addr().String(), CoreFlightAddr: flightAddr,
		AuthzAddr: authzAddr, RateLimitAddr: rlsAddr,
		CACert: f.certs.CACert, ServerCert: f.certs.ServerCert, ServerKey: f.certs.ServerKey,
		UpstreamCA: f.certs.CACert, UpstreamCert: f.certs.ClientCert, UpstreamKey: f.certs.ClientKey,
		MaxRequestBytes: 1024,
	}
	if mod != nil {
		mod(&o)
	}
	res, err := envoy.Build(o)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := gateway.New(res, gateway.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, ln) }()
	f.gw = ln.Addr().String()
	f.upAddr = upLn.Addr().String()
	f.tlsConf = clientTLS(tb, f.certs, true)
	f.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: f.tlsConf, ForceAttemptHTTP2: true}}
	tb.Cleanup(func() {
		f.client.CloseIdleConnections() // else Shutdown waits for them
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return f
}

func (f *fixture) post(tb testing.TB, body string, headers map[string]string) (*http.Response, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, "https://"+f.gw+"/graphql", strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestClientWithoutCertificateIsRefused(t *testing.T) {
	f := mustGateway(t, nil)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, f.certs, false)}}
	resp, err := c.Post("https://"+f.gw+"/graphql", "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want the handshake refused", resp.StatusCode)
	}
}

func TestIdentityHeadersAndCheckRequest(t *testing.T) {
	f := mustGateway(t, nil)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	resp, body := f.post(t, `{"query":"{ users { id } }"}`, map[string]string{
		"x-fraise-tenant": "forged", "X-Fraise-Roles": "admin", "authorization": "Bearer t0ken",
		"traceparent": traceparent,
	})
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %s, want 200", resp.StatusCode, body)
	}
	f.seen.mu.Lock()
	h := f.seen.headers
	f.seen.mu.Unlock()
	if got := h.Get("x-fraise-tenant"); got != "tenant-a" {
		t.Errorf("upstream got x-fraise-tenant %q, want the one extauthz set", got)
	}
	if got := h.Get("x-fraise-roles"); got != "" {
		t.Errorf("upstream got client-sent x-fraise-roles %q", got)
	}
	if got := h.Get("authorization"); got != "" {
		t.Errorf("upstream got authorization %q, want it removed by extauthz", got)
	}
	if got := h.Get("traceparent"); !strings.Contains(got, "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("upstream got traceparent %q, want the client's trace continued", got)
	}
	cr := f.authz.lastRequest()
	hr := cr.GetAttributes().GetRequest().GetHttp()
	if hr.GetMethod() != "POST" || hr.GetPath() != "/graphql" || hr.GetBody() != `{"query":"{ users { id } }"}` {
		t.Errorf("CheckRequest http = %s %s body %q", hr.GetMethod(), hr.GetPath(), hr.GetBody())
	}
	if hr.GetHeaders()["x-fraise-tenant"] != "" || hr.GetHeaders()["x-fraise-roles"] != "" {
		t.Errorf("ext_authz saw client x-fraise-* headers: %v", hr.GetHeaders())
	}
	if hr.GetHeaders()["authorization"] != "Bearer t0ken" || hr.GetId() == "" {
		t.Errorf("CheckRequest misses the token or the request id: %v", hr.GetHeaders())
	}
	if !strings.Contains(hr.GetHeaders()["traceparent"], "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("ext_authz got traceparent %q, want the client's trace", hr.GetHeaders()["traceparent"])
	}
	if p := cr.GetAttributes().GetSource().GetPrincipal(); !strings.Contains(p, "fraise-dev-client") {
		t.Errorf("got source principal %q, want the client certificate's name", p)
	}
	if got := f.rls.last.GetDescriptors()[0].GetEntries()[0]; got.GetKey() != "tenant" || got.GetValue() != "tenant-a" {
		t.Errorf("rate-limit descriptor %v, want tenant=tenant-a", got)
	}
}

func TestBodyOverTheAuthzBufferIs413(t *testing.T) {
	f := mustGateway(t, nil)
	resp, _ := f.post(t, `{"query":"`+strings.Repeat("x", 2048)+`"}`, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", resp.StatusCode)
	}
}

func TestDeniedResponsePassesThroughUnchanged(t *testing.T) {
	f := mustGateway(t, nil)
	f.authz.answer = func(*authv3.CheckRequest) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_PaymentRequired},
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-why", Value: "policy"}}},
				Body:    `{"errors":[{"message":"no tea","extensions":{"code":"FORBIDDEN"}}]}`,
			}},
		}
	}
	resp, body := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != 402 || resp.Header.Get("x-why") != "policy" || body != `{"errors":[{"message":"no tea","extensions":{"code":"FORBIDDEN"}}]}` {
		t.Fatalf("got %d %v %q, want the denial unchanged", resp.StatusCode, resp.Header, body)
	}
	f.seen.mu.Lock()
	defer f.seen.mu.Unlock()
	if f.seen.headers != nil {
		t.Fatal("a denied request reached the upstream")
	}
}

func TestAuthzUnreachableFailsClosed(t *testing.T) {
	f := mustGateway(t, func(o *envoy.Options) { o.AuthzAddr = deadAddr(t) })
	resp, _ := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("got %d, want 403 (fail closed)", resp.StatusCode)
	}
}

func TestOverLimit(t *testing.T) {
	f := mustGateway(t, nil)
	f.rls.over = true
	resp, body := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != 429 || resp.Header.Get("x-envoy-ratelimited") != "true" || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("got %d %v, want 429 with x-envoy-ratelimited and Retry-After", resp.StatusCode, resp.Header)
	}
	if body != envoy.RateLimitedBody || !strings.HasPrefix(resp.Header.Get("content-type"), "application/json") {
		t.Fatalf("got body %q (%s), want the local reply's JSON", body, resp.Header.Get("content-type"))
	}
}

func TestRateLimiterUnreachable(t *testing.T) {
	for _, tt := range []struct {
		name string
		deny bool
		want int
	}{{"fail open passes", false, 200}, {"fail closed refuses", true, 500}} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustGateway(t, func(o *envoy.Options) { o.RateLimitAddr = deadAddr(t); o.RateLimitFailureModeDeny = tt.deny })
			resp, _ := f.post(t, `{"query":"{ a }"}`, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestUnknownRouteIs404(t *testing.T) {
	f := mustGateway(t, nil)
	resp, err := f.client.Get("https://" + f.gw + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("got %d, want 404: admin paths are not routed", resp.StatusCode)
	}
}

// streamer is a server-streaming gRPC method on the Flight prefix that ends
// with trailers, so the test sees whether the proxy keeps them.
type streamer struct{}

type streamerServer interface{}

var streamDesc = grpc.ServiceDesc{
	ServiceName: "arrow.flight.protocol.FlightService",
	HandlerType: (*streamerServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "DoGet",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			var in wrapperspb.StringValue
			if err := stream.RecvMsg(&in); err != nil {
				return err
			}
			if in.GetValue() == "refuse" {
				// Before any message: grpc-go answers trailers-only.
				return grpcstatus.Error(codes.PermissionDenied, "refused")
			}
			for i := 0; i < 3; i++ {
				if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("%s-%d", in.GetValue(), i))); err != nil {
					return err
				}
			}
			stream.SetTrailer(metadata.Pairs("x-rows", "3"))
			return nil
		},
	}},
}

func TestGRPCStreamWithTrailers(t *testing.T) {
	f := mustGateway(t, nil)
	conn, err := grpc.NewClient(f.gw, grpc.WithTransportCredentials(credentials.NewTLS(f.tlsConf)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &streamDesc.Streams[0], "/arrow.flight.protocol.FlightService/DoGet")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.String("row")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseSend()
	var got []string
	for {
		var m wrapperspb.StringValue
		if err := s.RecvMsg(&m); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream: %v", err)
			}
			break
		}
		got = append(got, m.GetValue())
	}
	if strings.Join(got, ",") != "row-0,row-1,row-2" {
		t.Fatalf("got %v, want three messages", got)
	}
	if v := s.Trailer().Get("x-rows"); len(v) != 1 || v[0] != "3" {
		t.Fatalf("got trailer %v, want x-rows=3", s.Trailer())
	}
}

// TestGRPCTrailersOnlyKeepsStatus sends many streams the upstream refuses
// at once (a trailers-only response): each must reach the client with the
// upstream's status, however the proxy's flush races the response.
func TestGRPCTrailersOnlyKeepsStatus(t *testing.T) {
	f := mustGateway(t, nil)
	conn, err := grpc.NewClient(f.gw, grpc.WithTransportCredentials(credentials.NewTLS(f.tlsConf)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 100; i++ {
		s, err := conn.NewStream(ctx, &streamDesc.Streams[0], "/arrow.flight.protocol.FlightService/DoGet")
		if err != nil {
			t.Fatal(err)
		}
		_ = s.SendMsg(wrapperspb.String("refuse"))
		_ = s.CloseSend()
		var m wrapperspb.StringValue
		if err := s.RecvMsg(&m); grpcstatus.Code(err) != codes.PermissionDenied {
			t.Fatalf("stream %d: got %v, want PERMISSION_DENIED", i, err)
		}
	}
}

func TestGRPCLocalRepliesUseGRPCStatus(t *testing.T) {
	f := mustGateway(t, nil)
	f.rls.over = true
	conn, err := grpc.NewClient(f.gw, grpc.WithTransportCredentials(credentials.NewTLS(f.tlsConf)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &streamDesc.Streams[0], "/arrow.flight.protocol.FlightService/DoGet")
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SendMsg(wrapperspb.String("row"))
	_ = s.CloseSend()
	var m wrapperspb.StringValue
	err = s.RecvMsg(&m)
	if grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
}

func BenchmarkGatewayOverhead(b *testing.B) {
	f := mustGateway(b, nil)
	direct := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(b, f.certs, true)}}
	body := `{"query":"{ users { id } }"}`
	run := func(b *testing.B, c *http.Client, url string) {
		for i := 0; i < b.N; i++ {
			resp, err := c.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, direct, "https://"+f.upAddr+"/graphql") })
	b.Run("gateway", func(b *testing.B) { run(b, f.client, "https://"+f.gw+"/graphql") })
}
