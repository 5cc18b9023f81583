package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	grpcstatuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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

func (a *authz) setAnswer(f func(*authv3.CheckRequest) *authv3.CheckResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answer = f
}

func (a *authz) lastRequest() *authv3.CheckRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// allowAs answers as extauthz does for an allowed request: the identity
// headers set (overwriting), the credential removed.
func allowAs(tenant string) func(*authv3.CheckRequest) *authv3.CheckResponse {
	return func(*authv3.CheckRequest) *authv3.CheckResponse {
		var hs []*corev3.HeaderValueOption
		for _, kv := range [][2]string{
			{"x-fraise-tenant", tenant}, {"x-fraise-tier", "gold"}, {"x-fraise-subject", "alice"}, {"x-fraise-op", "read"},
		} {
			hs = append(hs, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: kv[0], Value: kv[1]},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
		return &authv3.CheckResponse{
			Status: &grpcstatuspb.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: hs, HeadersToRemove: []string{"authorization"},
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

// ShouldRateLimit answers as envoyproxy/ratelimit does with a limit on the
// first descriptor only: a status per descriptor, the first with its limit.
func (s *rls) ShouldRateLimit(ctx context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = r
	code, remaining := rlsv3.RateLimitResponse_OK, uint32(4)
	if s.over {
		code, remaining = rlsv3.RateLimitResponse_OVER_LIMIT, 0
	}
	resp := &rlsv3.RateLimitResponse{OverallCode: code, ResponseHeadersToAdd: []*corev3.HeaderValue{
		{Key: "RateLimit-Remaining", Value: fmt.Sprint(remaining)}, {Key: "Retry-After", Value: "7"},
	}}
	for i := range r.GetDescriptors() {
		st := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
		if i == 0 {
			st = &rlsv3.RateLimitResponse_DescriptorStatus{
				Code:               code,
				CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 5, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
				LimitRemaining:     remaining,
				DurationUntilReset: durationpb.New(7 * time.Second),
			}
		}
		resp.Statuses = append(resp.Statuses, st)
	}
	return resp, nil
}

func (s *rls) setOver(over bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.over = over
}

func (s *rls) lastRequest() *rlsv3.RateLimitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
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
	uri     string
}

func (u *upstreamSeen) get() (http.Header, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.headers, u.uri
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
		f.seen.uri = r.URL.RequestURI()
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
	return f.postPath(tb, "/graphql", body, headers)
}

func (f *fixture) postPath(tb testing.TB, path, body string, headers map[string]string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+f.gw+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
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
		"x-fraise-tenant": "forged", "X-Fraise-Roles": "admin", "X-FRAISE-TIER": "platinum", "authorization": "Bearer t0ken",
		"traceparent": traceparent, "x-forwarded-for": "203.0.113.9", "x-request-id": "client-chosen",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %s, want 200", resp.StatusCode, body)
	}
	h, _ := f.seen.get()
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
	if hr.GetMethod() != "POST" || hr.GetPath() != "/graphql" || hr.GetBody() != `{"query":"{ users { id } }"}` || hr.GetSize() != int64(len(hr.GetBody())) {
		t.Errorf("CheckRequest http = %s %s body %q size %d", hr.GetMethod(), hr.GetPath(), hr.GetBody(), hr.GetSize())
	}
	if hr.GetHost() != f.gw || hr.GetScheme() != "https" || hr.GetProtocol() != "HTTP/2" {
		t.Errorf("CheckRequest host %q scheme %q protocol %q, want %s https HTTP/2", hr.GetHost(), hr.GetScheme(), hr.GetProtocol(), f.gw)
	}
	hs := hr.GetHeaders()
	for k, want := range map[string]string{
		":method": "POST", ":path": "/graphql", ":authority": f.gw, ":scheme": "https",
		"authorization": "Bearer t0ken", "x-envoy-auth-partial-body": "false", "x-forwarded-proto": "https",
		"x-forwarded-for": "203.0.113.9,127.0.0.1", "content-type": "application/json",
		// Forwarded through another hop, the request is external.
		"x-envoy-external-address": "127.0.0.1", "x-envoy-internal": "",
	} {
		if hs[k] != want {
			t.Errorf("CheckRequest header %s = %q, want %q", k, hs[k], want)
		}
	}
	for k := range hs {
		if strings.HasPrefix(k, "x-fraise-") || k != strings.ToLower(k) {
			t.Errorf("ext_authz saw header %s: client x-fraise-* must be gone, names lower-case", k)
		}
	}
	if id := hs["x-request-id"]; id == "" || id == "client-chosen" || hr.GetId() == "" {
		t.Errorf("CheckRequest has request id %q and stream id %q, want an external client's id replaced", id, hr.GetId())
	}
	if _, err := strconv.ParseUint(hr.GetId(), 10, 64); err != nil {
		t.Errorf("got id %q, want Envoy's decimal stream id", hr.GetId())
	}
	if !strings.Contains(hs["traceparent"], "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("ext_authz got traceparent %q, want the client's trace", hs["traceparent"])
	}
	src, dst := cr.GetAttributes().GetSource(), cr.GetAttributes().GetDestination()
	if src.GetPrincipal() != "fraise-dev-client" {
		t.Errorf("got source principal %q, want the client certificate's DNS SAN", src.GetPrincipal())
	}
	if dst.GetPrincipal() != "localhost" {
		t.Errorf("got destination principal %q, want the listener certificate's DNS SAN", dst.GetPrincipal())
	}
	if sa := src.GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() == 0 {
		t.Errorf("got source address %v, want the client's", sa)
	}
	if got := fmt.Sprintf("%s:%d", dst.GetAddress().GetSocketAddress().GetAddress(), dst.GetAddress().GetSocketAddress().GetPortValue()); got != f.gw {
		t.Errorf("got destination address %s, want %s", got, f.gw)
	}
	pemText, err := url.PathUnescape(src.GetCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode([]byte(pemText)); blk == nil || strings.ContainsAny(src.GetCertificate(), "\n =+/") {
		t.Errorf("got certificate %.40q..., want URL-encoded PEM", src.GetCertificate())
	} else if c, err := x509.ParseCertificate(blk.Bytes); err != nil || c.Subject.CommonName != "fraise-dev-client" {
		t.Errorf("got certificate for %v (%v), want the client's", c.Subject, err)
	}
	if sni := cr.GetAttributes().GetTlsSession().GetSni(); sni != "localhost" {
		t.Errorf("got SNI %q, want localhost", sni)
	}
	want := [][]string{
		{"tier=gold", "tenant=tenant-a"},
		{"tier=gold", "tenant=tenant-a", "op=read"},
		{"tier=gold", "subject=alice"},
	}
	var got [][]string
	rl := f.rls.lastRequest()
	for _, d := range rl.GetDescriptors() {
		var es []string
		for _, e := range d.GetEntries() {
			es = append(es, e.GetKey()+"="+e.GetValue())
		}
		got = append(got, es)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || rl.GetDomain() != "fraise" {
		t.Errorf("rate-limit request %s %v, want domain fraise and %v", rl.GetDomain(), got, want)
	}
	if resp.Header.Get("X-RateLimit-Limit") != "5, 5;w=60" || resp.Header.Get("X-RateLimit-Remaining") != "4" ||
		resp.Header.Get("X-RateLimit-Reset") != "7" || resp.Header.Get("RateLimit-Remaining") != "4" {
		t.Errorf("got rate-limit response headers %v", resp.Header)
	}
}

func TestHTTP1Client(t *testing.T) {
	f := mustGateway(t, nil)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: f.tlsConf}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, "https://"+f.gw+"/graphql?x=1", strings.NewReader(`{"query":"{ a }"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-request-id", "loopback-chosen")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || !strings.Contains(string(body), `{ a }`) {
		t.Fatalf("got %s %d %s, want the upstream's echo over HTTP/1.1", resp.Proto, resp.StatusCode, body)
	}
	hr := f.authz.lastRequest().GetAttributes().GetRequest().GetHttp()
	if hr.GetProtocol() != "HTTP/1.1" || hr.GetPath() != "/graphql?x=1" {
		t.Errorf("got protocol %q path %q, want HTTP/1.1 /graphql?x=1", hr.GetProtocol(), hr.GetPath())
	}
	// A loopback peer is internal: its request id is kept.
	if hs := hr.GetHeaders(); hs["x-request-id"] != "loopback-chosen" || hs["x-envoy-internal"] != "true" || hs["x-envoy-external-address"] != "" {
		t.Errorf("internal request: got x-request-id %q, x-envoy-internal %q, x-envoy-external-address %q",
			hs["x-request-id"], hs["x-envoy-internal"], hs["x-envoy-external-address"])
	}
}

// TestOkResponseHeaderActions applies each append action as Envoy's
// ext_authz filter does, on the request and on the response.
func TestOkResponseHeaderActions(t *testing.T) {
	f := mustGateway(t, nil)
	hv := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
	}
	base := allowAs("tenant-a")
	f.authz.setAnswer(func(r *authv3.CheckRequest) *authv3.CheckResponse {
		resp := base(r)
		ok := resp.GetOkResponse()
		ok.Headers = append(ok.Headers,
			hv("x-add", "2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			hv("x-absent", "new", corev3.HeaderValueOption_ADD_IF_ABSENT),
			hv("x-present", "new", corev3.HeaderValueOption_ADD_IF_ABSENT),
			hv("x-overwrite", "new", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			hv("x-missing", "new", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			deprecatedAppend("x-joined", "2"),
		)
		ok.ResponseHeadersToAdd = []*corev3.HeaderValueOption{hv("x-decision", "d-1", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}
		ok.QueryParametersToSet = []*corev3.QueryParameter{{Key: "set", Value: "yes"}}
		ok.QueryParametersToRemove = []string{"drop"}
		return resp
	})
	resp, _ := f.postPath(t, "/graphql?drop=1&keep=2", `{"query":"{ a }"}`, map[string]string{
		"x-add": "1", "x-present": "old", "x-overwrite": "old", "x-joined": "1",
	})
	if resp.StatusCode != 200 || resp.Header.Get("x-decision") != "d-1" {
		t.Fatalf("got %d %v, want 200 with the response header extauthz added", resp.StatusCode, resp.Header)
	}
	h, uri := f.seen.get()
	for k, want := range map[string][]string{
		"x-add": {"1", "2"}, "x-absent": {"new"}, "x-present": {"old"}, "x-overwrite": {"new"}, "x-missing": nil, "x-joined": {"1,2"},
	} {
		if got := h.Values(k); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("upstream header %s = %q, want %q", k, got, want)
		}
	}
	if uri != "/graphql?keep=2&set=yes" {
		t.Errorf("upstream got %s, want the query parameters extauthz set and removed", uri)
	}
}

// deprecatedAppend uses the deprecated append flag extauthz servers still
// send, whose semantics (join with a comma) differ from append_action's.
func deprecatedAppend(k, v string) *corev3.HeaderValueOption {
	//lint:ignore SA1019 the gateway must honour the deprecated field as Envoy does.
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, Append: wrapperspb.Bool(true)}
}

func TestBodyOverTheAuthzBufferIs413(t *testing.T) {
	f := mustGateway(t, nil)
	resp, body := f.post(t, `{"query":"`+strings.Repeat("x", 2048)+`"}`, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || body != envoy.TooLargeBody ||
		!strings.HasPrefix(resp.Header.Get("content-type"), "application/json") {
		t.Fatalf("got %d %q (%s), want 413 with the local reply's JSON", resp.StatusCode, body, resp.Header.Get("content-type"))
	}
	if f.authz.lastRequest() != nil {
		t.Fatal("extauthz was asked about a body over the limit")
	}
}

func denyWith(code codes.Code, status typev3.StatusCode) func(*authv3.CheckRequest) *authv3.CheckResponse {
	return func(*authv3.CheckRequest) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &grpcstatuspb.Status{Code: int32(code)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: status},
				Headers: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "x-why", Value: "policy"}},
					{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: `Bearer error="invalid_token"`}},
					{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/problem+json"}},
				},
				Body: `{"errors":[{"message":"no tea","extensions":{"code":"FORBIDDEN"}}]}`,
			}},
		}
	}
}

// TestDenialsKeepExtauthzsBody checks the mapper that lets ext_authz's
// denials through: statuses the ingress maps for its own replies (413,
// 429) keep extauthz's body and headers when extauthz chose them.
func TestDenialsKeepExtauthzsBody(t *testing.T) {
	for _, st := range []typev3.StatusCode{typev3.StatusCode_PayloadTooLarge, typev3.StatusCode_TooManyRequests, typev3.StatusCode_Forbidden} {
		t.Run(st.String(), func(t *testing.T) {
			f := mustGateway(t, nil)
			f.authz.setAnswer(denyWith(codes.PermissionDenied, st))
			resp, body := f.post(t, `{"query":"{ a }"}`, nil)
			if resp.StatusCode != int(st) || body != `{"errors":[{"message":"no tea","extensions":{"code":"FORBIDDEN"}}]}` ||
				resp.Header.Get("content-type") != "application/problem+json" {
				t.Fatalf("got %d %q (%s), want extauthz's %d denial unchanged", resp.StatusCode, body, resp.Header.Get("content-type"), st)
			}
		})
	}
}

func TestDeniedResponsePassesThroughUnchanged(t *testing.T) {
	f := mustGateway(t, nil)
	f.authz.setAnswer(denyWith(codes.PermissionDenied, typev3.StatusCode_PaymentRequired))
	resp, body := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != 402 || resp.Header.Get("x-why") != "policy" || resp.Header.Get("www-authenticate") != `Bearer error="invalid_token"` ||
		resp.Header.Get("content-type") != "application/problem+json" ||
		body != `{"errors":[{"message":"no tea","extensions":{"code":"FORBIDDEN"}}]}` {
		t.Fatalf("got %d %v %q, want the denial unchanged", resp.StatusCode, resp.Header, body)
	}
	if h, _ := f.seen.get(); h != nil {
		t.Fatal("a denied request reached the upstream")
	}
	if f.rls.lastRequest() != nil {
		t.Fatal("a denied request was counted by the rate limiter")
	}
}

func TestDeniedGRPCCallGetsTheMappedStatus(t *testing.T) {
	f := mustGateway(t, nil)
	f.authz.setAnswer(denyWith(codes.Unauthenticated, typev3.StatusCode_Unauthorized))
	_, err := f.doGet(t, "row")
	st := grpcstatus.Convert(err)
	if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "no tea") {
		t.Fatalf("got %v, want UNAUTHENTICATED carrying the denial's body", err)
	}
}

func TestAuthzErrorResponseFailsClosed(t *testing.T) {
	f := mustGateway(t, nil)
	f.authz.setAnswer(func(*authv3.CheckRequest) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status:       &grpcstatuspb.Status{Code: int32(codes.Unavailable)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "policy engine down"}},
		}
	})
	resp, body := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || body != envoy.UnavailableBody || resp.Header.Get("Retry-After") != envoy.UnavailableRetryAfter {
		t.Fatalf("got %d %q %v, want status_on_error 503 mapped to UNAVAILABLE with Retry-After", resp.StatusCode, body, resp.Header)
	}
}

func TestAuthzUnreachableFailsClosed(t *testing.T) {
	f := mustGateway(t, func(o *envoy.Options) { o.AuthzAddr = deadAddr(t) })
	resp, body := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || body != envoy.UnavailableBody || resp.Header.Get("Retry-After") != envoy.UnavailableRetryAfter {
		t.Fatalf("got %d %q %v, want 503 UNAVAILABLE with Retry-After (fail closed)", resp.StatusCode, body, resp.Header)
	}
	if h, _ := f.seen.get(); h != nil {
		t.Fatal("a request reached the upstream without a decision")
	}
	if _, err := f.doGet(t, "row"); grpcstatus.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC: got %v, want UNAVAILABLE (fail closed)", err)
	}
}

func TestOverLimit(t *testing.T) {
	f := mustGateway(t, nil)
	f.rls.setOver(true)
	resp, body := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != 429 || resp.Header.Get("x-envoy-ratelimited") != "true" || resp.Header.Get("Retry-After") != "7" ||
		resp.Header.Get("X-RateLimit-Remaining") != "0" || resp.Header.Get("X-RateLimit-Limit") != "5, 5;w=60" {
		t.Fatalf("got %d %v, want 429 with x-envoy-ratelimited, Retry-After and X-RateLimit-*", resp.StatusCode, resp.Header)
	}
	if body != envoy.RateLimitedBody || !strings.HasPrefix(resp.Header.Get("content-type"), "application/json") {
		t.Fatalf("got body %q (%s), want the local reply's JSON", body, resp.Header.Get("content-type"))
	}
	if h, _ := f.seen.get(); h != nil {
		t.Fatal("a limited request reached the upstream")
	}
}

func TestRateLimiterUnreachable(t *testing.T) {
	for _, tt := range []struct {
		name     string
		deny     bool
		want     int
		wantGRPC codes.Code
	}{
		{"fail open passes", false, 200, codes.OK},
		{"fail closed refuses", true, 503, codes.Unavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustGateway(t, func(o *envoy.Options) { o.RateLimitAddr = deadAddr(t); o.RateLimitFailureModeDeny = tt.deny })
			resp, _ := f.post(t, `{"query":"{ a }"}`, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tt.want)
			}
			if _, err := f.doGet(t, "row"); grpcstatus.Code(err) != tt.wantGRPC {
				t.Fatalf("gRPC: got %v, want %v", err, tt.wantGRPC)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	f := mustGateway(t, func(o *envoy.Options) { o.CoreHTTPAddr, o.CoreFlightAddr = deadAddr(t), deadAddr(t) })
	resp, body := f.post(t, `{"query":"{ a }"}`, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || body != envoy.UnavailableBody || resp.Header.Get("Retry-After") != envoy.UnavailableRetryAfter {
		t.Fatalf("got %d %q %v, want Envoy's 503 mapped to UNAVAILABLE with Retry-After", resp.StatusCode, body, resp.Header)
	}
	if _, err := f.doGet(t, "row"); grpcstatus.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC: got %v, want UNAVAILABLE", err)
	}
}

func TestOnlyAPIPathsAreRouted(t *testing.T) {
	f := mustGateway(t, nil)
	for _, tt := range []struct {
		name, path string
		want       int
		authz      bool
	}{
		{"admin path", "/metrics", 404, false},
		{"health path", "/readyz", 404, false},
		{"below graphql", "/graphql/readyz", 404, false},
		{"dot segments resolve", "/x/../graphql", 200, true},
		{"merged slashes", "//graphql", 200, true},
		{"escaped slash", "/graphql%2F..%2Freadyz", 400, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.authz.mu.Lock()
			f.authz.last = nil
			f.authz.mu.Unlock()
			resp, body := f.postPath(t, tt.path, `{"query":"{ a }"}`, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tt.want)
			}
			if asked := f.authz.lastRequest() != nil; asked != tt.authz {
				t.Fatalf("extauthz asked: %v, want %v", asked, tt.authz)
			}
			if tt.want == 404 && body != envoy.NotFoundBody {
				t.Fatalf("got body %q, want the not-found JSON", body)
			}
		})
	}
}

func TestHeaderLimits(t *testing.T) {
	f := mustGateway(t, nil)
	many := map[string]string{}
	for i := 0; i < envoy.MaxHeadersCount+1; i++ {
		many[fmt.Sprintf("x-h-%d", i)] = "v"
	}
	if resp, _ := f.post(t, `{}`, many); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("%d headers: got %d, want 431", len(many), resp.StatusCode)
	}
	if f.authz.lastRequest() != nil {
		t.Fatal("extauthz was asked about a request over the header limit")
	}
}

func TestConnectionLimit(t *testing.T) {
	f := mustGateway(t, func(o *envoy.Options) { o.MaxConnections = 1 })
	first, err := tls.Dial("tcp", f.gw, f.tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: f.tlsConf}}
	defer c.CloseIdleConnections()
	if resp, err := c.Get("https://" + f.gw + "/graphql"); err == nil {
		resp.Body.Close()
		t.Fatalf("second connection served (%d), want it closed while the first is open", resp.StatusCode)
	}
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := c.Get("https://" + f.gw + "/metrics")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after the first closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
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

func (f *fixture) doGet(tb testing.TB, ticket string) ([]string, error) {
	tb.Helper()
	conn, err := grpc.NewClient(f.gw, grpc.WithTransportCredentials(credentials.NewTLS(f.tlsConf)))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &streamDesc.Streams[0], "/arrow.flight.protocol.FlightService/DoGet")
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(wrapperspb.String(ticket)); err != nil {
		return nil, err
	}
	_ = s.CloseSend()
	var got []string
	for {
		var m wrapperspb.StringValue
		if err := s.RecvMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				if v := s.Trailer().Get("x-rows"); len(v) != 1 || v[0] != "3" {
					return got, fmt.Errorf("got trailer %v, want x-rows=3", s.Trailer())
				}
				return got, nil
			}
			return got, err
		}
		got = append(got, m.GetValue())
	}
}

func TestGRPCStreamWithTrailers(t *testing.T) {
	f := mustGateway(t, nil)
	got, err := f.doGet(t, "row")
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if strings.Join(got, ",") != "row-0,row-1,row-2" {
		t.Fatalf("got %v, want three messages", got)
	}
	// Flight calls are decided on metadata: no body buffered for extauthz.
	hr := f.authz.lastRequest().GetAttributes().GetRequest().GetHttp()
	if hr.GetBody() != "" || hr.GetHeaders()["x-envoy-auth-partial-body"] != "" || hr.GetProtocol() != "HTTP/2" {
		t.Fatalf("Flight CheckRequest carried body %q (partial %q) over %s, want none over HTTP/2", hr.GetBody(),
			hr.GetHeaders()["x-envoy-auth-partial-body"], hr.GetProtocol())
	}
	if n := len(f.rls.lastRequest().GetDescriptors()); n != 3 {
		t.Fatalf("got %d descriptors for the Flight call, want 3", n)
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
	f.rls.setOver(true)
	if _, err := f.doGet(t, "row"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
}

// BenchmarkGatewayOverhead measures the latency the gateway adds on
// loopback: the same request to the upstream directly, then through the
// gateway (ext_authz and rate-limit calls to in-process gRPC servers,
// mTLS to the upstream), both over HTTP/1.1 keep-alive connections.
func BenchmarkGatewayOverhead(b *testing.B) {
	f := mustGateway(b, nil)
	body := `{"query":"{ users { id } }"}`
	h1 := func() *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: f.tlsConf, MaxIdleConnsPerHost: 1}}
	}
	run := func(b *testing.B, c *http.Client, url string) []time.Duration {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			resp, err := c.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("got %d", resp.StatusCode)
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	var direct, gw []time.Duration
	b.Run("direct", func(b *testing.B) {
		direct = run(b, h1(), "https://"+f.upAddr+"/graphql")
		reportPercentiles(b, direct)
	})
	b.Run("gateway", func(b *testing.B) {
		gw = run(b, h1(), "https://"+f.gw+"/graphql")
		reportPercentiles(b, gw)
		if len(direct) > 0 {
			b.ReportMetric(float64(percentile(gw, 50)-percentile(direct, 50))/1e6, "added-p50-ms")
			b.ReportMetric(float64(percentile(gw, 99)-percentile(direct, 99))/1e6, "added-p99-ms")
		}
	})
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	b.ReportMetric(float64(percentile(d, 50))/1e6, "p50-ms")
	b.ReportMetric(float64(percentile(d, 99))/1e6, "p99-ms")
}
