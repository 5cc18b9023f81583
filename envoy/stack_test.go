package envoy_test

// The fixture of the ingress tests: real Envoy (envoytest) on envoy.Build's
// configuration, in front of servers written here that stand for the
// core's HTTP and Flight ports, extauthz and the rate limiter. They are
// test servers for Envoy's configuration, scripted per test case; the real
// extauthz and envoyproxy/ratelimit are exercised by test/e2e.
//
// Every request of a case carries the header (or gRPC metadata)
// x-test-case with the case's id: the ext_authz server picks the case's
// script by it and, unless scripted otherwise, allows the request setting
// x-fraise-tenant to the id, so the rate-limit server finds the case by its
// tenant descriptor. Upstreams record what they received by case. Cases
// therefore run in parallel on one Envoy without seeing each other.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	grpcstatuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/envoytest"
	"github.com/fraise-dev/fraise/envoy/xds"
)

// caseHeader names the test case a request belongs to.
const caseHeader = "x-test-case"

// peerInfo is what an upstream saw of Envoy's connection: the TLS server
// name Envoy asked for and the DNS SANs of the certificate it presented
// (nil over plaintext).
type peerInfo struct {
	TLS  bool
	SNI  string
	SANs []string
}

func peerOf(cs *tls.ConnectionState) peerInfo {
	if cs == nil {
		return peerInfo{}
	}
	p := peerInfo{TLS: true, SNI: cs.ServerName}
	if len(cs.PeerCertificates) > 0 {
		p.SANs = cs.PeerCertificates[0].DNSNames
	}
	return p
}

// coreRequest is one request the core's HTTP port received.
type coreRequest struct {
	Proto   string
	Method  string
	URI     string
	Header  http.Header
	Trailer http.Header
	Body    string
	Peer    peerInfo
}

// coreHTTP stands for the core's GraphQL port: HTTP/1.1, mTLS when the
// generated cluster says so. It records each request by case and answers
// as the request's x-test-core header asks:
//
//	""             200 with a GraphQL-shaped echo of the body
//	"unavailable"  the core's own 503 (admission's), JSON with Retry-After: 5
//	"hang"         nothing until the request ends (a route timeout)
//	"stall"        headers and a first chunk, then nothing
//	"stream"       chunks "part-0".."part-2", each after the client
//	               acknowledged the previous one (ack(case))
type coreHTTP struct {
	mu   sync.Mutex
	seen map[string][]coreRequest
	acks map[string]chan struct{}
}

func (c *coreHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get(caseHeader)
	c.mu.Lock()
	c.seen[id] = append(c.seen[id], coreRequest{
		Proto: r.Proto, Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Trailer: r.Trailer.Clone(),
		Body: string(body), Peer: peerOf(r.TLS),
	})
	c.mu.Unlock()
	w.Header().Set("content-type", "application/json")
	w.Header().Set("server", "fraise-core")
	switch r.Header.Get("x-test-core") {
	case "unavailable":
		w.Header().Set("retry-after", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, coreBusyBody)
	case "hang":
		<-r.Context().Done()
	case "stall":
		_, _ = io.WriteString(w, `{"data":`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case "stream":
		ack := c.ackChan(id)
		for i := range 3 {
			if i > 0 {
				select {
				case <-ack:
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "part-%d\n", i)
			w.(http.Flusher).Flush()
		}
	default:
		w.Header().Set("x-core-echo", "1")
		fmt.Fprintf(w, `{"data":{"echo":%q}}`, body)
	}
}

// coreBusyBody is the core's own 503 body, which the ingress's mappers
// must leave alone.
const coreBusyBody = `{"errors":[{"message":"busy","extensions":{"code":"UNAVAILABLE","source":"core"}}]}`

func (c *coreHTTP) ackChan(id string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.acks[id]
	if !ok {
		ch = make(chan struct{}, 1)
		c.acks[id] = ch
	}
	return ch
}

// ack lets the streaming handler of case id send its next chunk.
func (c *coreHTTP) ack(id string) { c.ackChan(id) <- struct{}{} }

func (c *coreHTTP) requests(id string) []coreRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

// flightCall is one call the Flight upstream received.
type flightCall struct {
	Method     string
	MD         metadata.MD
	Descriptor *flight.FlightDescriptor
	Peer       peerInfo
}

// flightServer stands for the core's Flight port: an arrow-go Flight
// service over HTTP/2, mTLS when the cluster says so. DoGet answers by
// ticket:
//
//	"rows"    three FlightData messages (app_metadata row-0..row-2), then
//	          the trailer x-rows: 3
//	"refuse"  PERMISSION_DENIED before any message (a trailers-only answer)
//	"acked"   three messages, each after the client acknowledged the
//	          previous one (ack(case)), then the trailer
//	"paced:D:N" N messages D apart, then the trailer
//	"stall"   one message, then nothing until the call ends
//
// DoPut answers with the number of data body bytes it received.
type flightServer struct {
	flight.BaseFlightServer
	mu    sync.Mutex
	calls map[string][]flightCall
	acks  map[string]chan struct{}
}

func (f *flightServer) record(ctx context.Context, method string, d *flight.FlightDescriptor) string {
	md, _ := metadata.FromIncomingContext(ctx)
	var p peerInfo
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			p = peerOf(&ti.State)
		}
	}
	id := first(md.Get(caseHeader))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[id] = append(f.calls[id], flightCall{Method: method, MD: md.Copy(), Descriptor: d, Peer: p})
	return id
}

func (f *flightServer) GetFlightInfo(ctx context.Context, d *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	f.record(ctx, "GetFlightInfo", d)
	if len(d.GetPath()) == 1 && d.GetPath()[0] == "hang" {
		<-ctx.Done() // past the route timeout
		return nil, ctx.Err()
	}
	return &flight.FlightInfo{FlightDescriptor: d, TotalRecords: 3}, nil
}

func (f *flightServer) GetSchema(ctx context.Context, d *flight.FlightDescriptor) (*flight.SchemaResult, error) {
	f.record(ctx, "GetSchema", d)
	return &flight.SchemaResult{Schema: []byte("schema")}, nil
}

func (f *flightServer) PollFlightInfo(ctx context.Context, d *flight.FlightDescriptor) (*flight.PollInfo, error) {
	f.record(ctx, "PollFlightInfo", d)
	return &flight.PollInfo{Info: &flight.FlightInfo{FlightDescriptor: d}}, nil
}

func (f *flightServer) ackChan(id string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.acks[id]
	if !ok {
		ch = make(chan struct{}, 1)
		f.acks[id] = ch
	}
	return ch
}

func (f *flightServer) ack(id string) { f.ackChan(id) <- struct{}{} }

func (f *flightServer) DoGet(t *flight.Ticket, s flight.FlightService_DoGetServer) error {
	ctx := s.Context()
	id := f.record(ctx, "DoGet", nil)
	send := func(i int) error {
		return s.Send(&flight.FlightData{AppMetadata: []byte(fmt.Sprintf("row-%d", i))})
	}
	ticket := string(t.GetTicket())
	switch {
	case ticket == "refuse":
		return grpcstatus.Error(codes.PermissionDenied, "refused by the core")
	case ticket == "stall":
		if err := send(0); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	case ticket == "acked":
		ack := f.ackChan(id)
		for i := range 3 {
			if i > 0 {
				select {
				case <-ack:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := send(i); err != nil {
				return err
			}
		}
	case strings.HasPrefix(ticket, "paced:"):
		parts := strings.Split(ticket, ":")
		d, err := time.ParseDuration(parts[1])
		if err != nil {
			return grpcstatus.Error(codes.InvalidArgument, err.Error())
		}
		var n int
		if _, err := fmt.Sscan(parts[2], &n); err != nil {
			return grpcstatus.Error(codes.InvalidArgument, err.Error())
		}
		tick := time.NewTicker(d) // pacing the stream is the point: it must outlast a route timeout
		defer tick.Stop()
		for i := range n {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := send(i); err != nil {
				return err
			}
		}
		s.SetTrailer(metadata.Pairs("x-rows", fmt.Sprint(n)))
		return nil
	default:
		for i := range 3 {
			if err := send(i); err != nil {
				return err
			}
		}
	}
	s.SetTrailer(metadata.Pairs("x-rows", "3"))
	return nil
}

func (f *flightServer) DoPut(s flight.FlightService_DoPutServer) error {
	f.record(s.Context(), "DoPut", nil)
	n := 0
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.Send(&flight.PutResult{AppMetadata: []byte(fmt.Sprint(n))})
		}
		if err != nil {
			return err
		}
		n += len(d.GetDataBody())
	}
}

func (f *flightServer) DoAction(a *flight.Action, s flight.FlightService_DoActionServer) error {
	f.record(s.Context(), "DoAction", nil)
	return s.Send(&flight.Result{Body: []byte("done:" + a.GetType())})
}

func (f *flightServer) callsOf(id string) []flightCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// authzScript answers a CheckRequest as a test case scripts it.
type authzScript func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)

// authzServer is an envoy.service.auth.v3.Authorization server.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	mu      sync.Mutex
	scripts map[string]authzScript
	seen    map[string][]*authv3.CheckRequest
	peers   []peerInfo
}

func (a *authzServer) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	id := r.GetAttributes().GetRequest().GetHttp().GetHeaders()[caseHeader]
	a.mu.Lock()
	a.seen[id] = append(a.seen[id], r)
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			a.peers = append(a.peers, peerOf(&ti.State))
		} else {
			a.peers = append(a.peers, peerInfo{})
		}
	}
	script, ok := a.scripts[id]
	a.mu.Unlock()
	if !ok {
		script = allowAs(id)
	}
	return script(ctx, r)
}

func (a *authzServer) requests(id string) []*authv3.CheckRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[id]
}

func (a *authzServer) lastPeer() peerInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.peers) == 0 {
		return peerInfo{}
	}
	return a.peers[len(a.peers)-1]
}

// identity is what allowAs sets, as extauthz does for an allowed request.
func identity(tenant string) [][2]string {
	return [][2]string{
		{envoy.TenantHeader, tenant}, {envoy.TierHeader, "gold"}, {envoy.SubjectHeader, "alice"}, {envoy.OpHeader, "read"},
	}
}

func hv(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
}

// allowWith allows the request setting headers (overwriting) and removing
// the credential, as extauthz does.
func allowWith(headers [][2]string) authzScript {
	return func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		var hs []*corev3.HeaderValueOption
		for _, kv := range headers {
			hs = append(hs, hv(kv[0], kv[1], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
		}
		return &authv3.CheckResponse{
			Status: &grpcstatuspb.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: hs, HeadersToRemove: []string{"authorization"},
			}},
		}, nil
	}
}

func allowAs(tenant string) authzScript { return allowWith(identity(tenant)) }

// rlsScript answers a RateLimitRequest as a test case scripts it.
type rlsScript func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error)

// rlsServer is an envoy.service.ratelimit.v3.RateLimitService server; it
// finds a request's case by its tenant descriptor entry.
type rlsServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu      sync.Mutex
	scripts map[string]rlsScript
	seen    map[string][]*rlsv3.RateLimitRequest
	peers   []peerInfo
}

func tenantOf(r *rlsv3.RateLimitRequest) string {
	for _, d := range r.GetDescriptors() {
		for _, e := range d.GetEntries() {
			if e.GetKey() == "tenant" {
				return e.GetValue()
			}
		}
	}
	return ""
}

func (s *rlsServer) ShouldRateLimit(ctx context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	id := tenantOf(r)
	s.mu.Lock()
	s.seen[id] = append(s.seen[id], r)
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			s.peers = append(s.peers, peerOf(&ti.State))
		} else {
			s.peers = append(s.peers, peerInfo{})
		}
	}
	script, ok := s.scripts[id]
	s.mu.Unlock()
	if !ok {
		script = limited(false)
	}
	return script(r)
}

func (s *rlsServer) requests(id string) []*rlsv3.RateLimitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

func (s *rlsServer) lastPeer() peerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.peers) == 0 {
		return peerInfo{}
	}
	return s.peers[len(s.peers)-1]
}

// limited answers as envoyproxy/ratelimit does with a limit of 5 a minute
// on the first descriptor only: a status per descriptor, the first with
// its limit, 4 left (0 when over), reset in 7 s, and its own headers
// (Retry-After when over).
func limited(over bool) rlsScript {
	return func(r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		code, remaining := rlsv3.RateLimitResponse_OK, uint32(4)
		if over {
			code, remaining = rlsv3.RateLimitResponse_OVER_LIMIT, 0
		}
		resp := &rlsv3.RateLimitResponse{OverallCode: code, ResponseHeadersToAdd: []*corev3.HeaderValue{
			{Key: "RateLimit-Remaining", Value: fmt.Sprint(remaining)},
		}}
		if over {
			resp.ResponseHeadersToAdd = append(resp.ResponseHeadersToAdd, &corev3.HeaderValue{Key: "Retry-After", Value: "7"})
		}
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
}

// stack is one Envoy on envoy.Build's configuration and the servers
// behind it.
type stack struct {
	certs  devcerts.Files
	opts   envoy.Options
	res    *envoy.Resources
	envoy  *envoytest.Running
	core   *coreHTTP
	flight *flightServer
	authz  *authzServer
	rls    *rlsServer
	// clientTLS presents the end user's certificate, as every API client
	// must.
	clientTLS *tls.Config
	h1, h2    *http.Client
	grpcConn  *grpc.ClientConn
	nextCase  atomic.Int64
}

// newStack starts the servers and Envoy on the static bootstrap. mod may
// change the options the servers' addresses are filled into (point a
// cluster at a dead address, shorten a timeout); a server whose address
// mod replaced is not started.
func newStack(tb testing.TB, mod func(*envoy.Options)) *stack {
	tb.Helper()
	return startStack(tb, mod, false)
}

// newXDSStack is newStack with Envoy on the xDS bootstrap, taking the
// same resources from an xds.Server over ADS, as `fraise xds` serves them.
func newXDSStack(tb testing.TB, mod func(*envoy.Options)) *stack {
	tb.Helper()
	return startStack(tb, mod, true)
}

func startStack(tb testing.TB, mod func(*envoy.Options), viaXDS bool) *stack {
	tb.Helper()
	certs, err := devcerts.Generate(filepath.Join(tb.TempDir(), "certs"), devcerts.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	s := &stack{
		certs:  certs,
		core:   &coreHTTP{seen: map[string][]coreRequest{}, acks: map[string]chan struct{}{}},
		flight: &flightServer{calls: map[string][]flightCall{}, acks: map[string]chan struct{}{}},
		authz:  &authzServer{scripts: map[string]authzScript{}, seen: map[string][]*authv3.CheckRequest{}},
		rls:    &rlsServer{scripts: map[string]rlsScript{}, seen: map[string][]*rlsv3.RateLimitRequest{}},
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { ln.Close() })
		return ln
	}
	coreLn, flightLn, authzLn, rlsLn, xdsLn := listen(), listen(), listen(), listen(), listen()
	o := envoy.Options{
		ListenAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		CoreHTTPAddr: coreLn.Addr().String(), CoreFlightAddr: flightLn.Addr().String(),
		AuthzAddr: authzLn.Addr().String(), RateLimitAddr: rlsLn.Addr().String(),
		CACert: certs.CACert, ServerCert: certs.ServerCert, ServerKey: certs.ServerKey,
		UpstreamCA: certs.CACert, UpstreamCert: certs.GatewayCert, UpstreamKey: certs.GatewayKey,
		MaxRequestBytes: 1024,
		// Generous: on a loaded machine a 100 ms limiter timeout would fail
		// open and pass a request a test expects refused. The timeouts
		// themselves are tested on a stack of their own.
		AuthzTimeout: 5 * time.Second, RateLimitTimeout: 5 * time.Second,
		XDSAddr: xdsLn.Addr().String(),
	}
	if mod != nil {
		mod(&o)
	}
	s.opts = o
	res, err := envoy.Build(o)
	if err != nil {
		tb.Fatal(err)
	}
	if err := res.Validate(); err != nil {
		tb.Fatal(err)
	}
	s.res = res

	// Each server speaks TLS exactly when Envoy's cluster for it does:
	// the generated configuration decides, not this fixture.
	serve := func(ln net.Listener, addr, cluster string, start func(net.Listener, *tls.Config)) {
		if addr != ln.Addr().String() {
			ln.Close() // mod sent Envoy elsewhere
			return
		}
		var tc *tls.Config
		if clusterOf(tb, res, cluster).GetTransportSocket() != nil {
			tc = serverTLS(tb, certs)
		}
		start(ln, tc)
	}
	serve(coreLn, o.CoreHTTPAddr, envoy.ClusterCoreHTTP, func(ln net.Listener, tc *tls.Config) {
		srv := &http.Server{Handler: s.core, ReadHeaderTimeout: 10 * time.Second}
		if tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		go func() { _ = srv.Serve(ln) }()
		tb.Cleanup(func() { srv.Close() })
	})
	grpcServe := func(register func(*grpc.Server)) func(net.Listener, *tls.Config) {
		return func(ln net.Listener, tc *tls.Config) {
			var opts []grpc.ServerOption
			if tc != nil {
				opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
			}
			g := grpc.NewServer(opts...)
			register(g)
			healthpb.RegisterHealthServer(g, health.NewServer())
			go func() { _ = g.Serve(ln) }()
			tb.Cleanup(g.Stop)
		}
	}
	serve(flightLn, o.CoreFlightAddr, envoy.ClusterCoreFlight, grpcServe(func(g *grpc.Server) { flight.RegisterFlightServiceServer(g, s.flight) }))
	serve(authzLn, o.AuthzAddr, envoy.ClusterAuthz, grpcServe(func(g *grpc.Server) { authv3.RegisterAuthorizationServer(g, s.authz) }))
	serve(rlsLn, o.RateLimitAddr, envoy.ClusterRateLimit, grpcServe(func(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, s.rls) }))

	if viaXDS {
		s.envoy = startOverXDS(tb, res, xdsLn, certs)
	} else {
		xdsLn.Close()
		s.envoy = envoytest.Start(tb, res)
	}
	if s.envoy.Addr == "" {
		tb.Fatal("envoy has no ingress listener")
	}
	s.clientTLS = clientTLS(tb, certs, certs.ClientCert, certs.ClientKey)
	// Each client its own copy: the HTTP/2 transport adds h2 to the
	// ALPN list of the config it is given.
	s.h1 = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: alpn(s.clientTLS, "http/1.1")}}
	s.h2 = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: alpn(s.clientTLS, "h2"), ForceAttemptHTTP2: true}}
	tb.Cleanup(s.h1.CloseIdleConnections)
	tb.Cleanup(s.h2.CloseIdleConnections)
	s.grpcConn, err = grpc.NewClient(s.envoy.Addr, grpc.WithTransportCredentials(credentials.NewTLS(alpn(s.clientTLS, "h2"))))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.grpcConn.Close() })
	return s
}

// startOverXDS serves res from an xds.Server on ln (over TLS when the
// bootstrap's xds cluster has it) and starts Envoy on the xDS bootstrap,
// returning once its ingress listener, received over ADS, is bound.
func startOverXDS(tb testing.TB, res *envoy.Resources, ln net.Listener, certs devcerts.Files) *envoytest.Running {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	b, err := res.XDSBootstrap()
	if err != nil {
		tb.Fatal(err)
	}
	srv := xds.New(ctx, "", nil)
	if _, err := srv.Publish(ctx, res); err != nil {
		tb.Fatal(err)
	}
	var opts []grpc.ServerOption
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == envoy.ClusterXDS && c.GetTransportSocket() != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(serverTLS(tb, certs))))
		}
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	y, err := envoy.BootstrapYAML(b)
	if err != nil {
		tb.Fatal(err)
	}
	e := envoytest.StartYAML(tb, y)
	// Envoy is ready once its first LDS and CDS answers are in; the
	// listener may still be warming (waiting for its routes).
	deadline := time.Now().Add(time.Minute)
	for e.Addr == "" {
		if addr, err := e.ListenerAddr(ctx, envoy.ListenerName); err == nil {
			e.Addr = addr
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no ingress listener from xDS within a minute\n%s", e.Output())
		}
		select {
		case <-e.Done():
			tb.Fatalf("envoy exited: %v", e.Err())
		case <-time.After(20 * time.Millisecond): // Envoy's admin has no event to wait on
		}
	}
	return e
}

func certPool(tb testing.TB, caFile string) *x509.CertPool {
	tb.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		tb.Fatalf("no certificate in %s", caFile)
	}
	return pool
}

// serverTLS is an internal server's TLS: the server certificate (SAN
// localhost, Envoy's UpstreamServerName) and client certificates verified
// against the CA.
func serverTLS(tb testing.TB, f devcerts.Files) *tls.Config {
	tb.Helper()
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: certPool(tb, f.CACert),
		ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"h2", "http/1.1"},
	}
}

// clientTLS is a client's TLS towards the ingress; certFile "" presents no
// certificate.
func clientTLS(tb testing.TB, f devcerts.Files, certFile, keyFile string) *tls.Config {
	tb.Helper()
	c := &tls.Config{RootCAs: certPool(tb, f.CACert), ServerName: "localhost"}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			tb.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// alpn is a copy of c offering protos.
func alpn(c *tls.Config, protos ...string) *tls.Config {
	c = c.Clone()
	c.NextProtos = protos
	return c
}

// newCase returns a fresh case id for s.
func (s *stack) newCase() string { return fmt.Sprintf("case-%d", s.nextCase.Add(1)) }

func (s *stack) scriptAuthz(id string, f authzScript) {
	s.authz.mu.Lock()
	defer s.authz.mu.Unlock()
	s.authz.scripts[id] = f
}

func (s *stack) scriptRLS(id string, f rlsScript) {
	s.rls.mu.Lock()
	defer s.rls.mu.Unlock()
	s.rls.scripts[id] = f
}

// reply is a response read whole.
type reply struct {
	Status  int
	Proto   string
	Header  http.Header
	Trailer http.Header
	Body    string
}

// do sends method path with body and headers (each may repeat) over c,
// marked as case id.
func (s *stack) do(tb testing.TB, c *http.Client, id, method, path, body string, headers ...[2]string) reply {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+s.envoy.Addr+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("content-type", "application/json")
	}
	req.Header.Set(caseHeader, id)
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return reply{Status: resp.StatusCode, Proto: resp.Proto, Header: resp.Header, Trailer: resp.Trailer, Body: string(b)}
}

func (s *stack) post(tb testing.TB, c *http.Client, id, body string, headers ...[2]string) reply {
	tb.Helper()
	return s.do(tb, c, id, http.MethodPost, envoy.GraphQLPath, body, headers...)
}

// raw writes request, an HTTP/1.1 request verbatim (header names in the
// case the test chose, repeated headers, paths no client library would
// send), on a new connection and reads the response.
func (s *stack) raw(tb testing.TB, request string) reply {
	tb.Helper()
	conn, err := tls.Dial("tcp", s.envoy.Addr, alpn(s.clientTLS, "http/1.1"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatalf("reading the response to %q: %v", request, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return reply{Status: resp.StatusCode, Proto: resp.Proto, Header: resp.Header, Body: string(b)}
}

// rawRequest builds an HTTP/1.1 request for raw: header lines as given,
// the case header, host and content length added.
func (s *stack) rawRequest(id, method, target, body string, headerLines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n%s: %s\r\n", method, target, s.envoy.Addr, caseHeader, id)
	for _, l := range headerLines {
		b.WriteString(l + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n" + body)
	return b.String()
}

// flightClient is a Flight client through the ingress whose calls carry
// case id and md.
func (s *stack) flightCtx(tb testing.TB, id string, md ...string) (context.Context, flight.FlightServiceClient) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, append([]string{caseHeader, id}, md...)...)
	return ctx, flight.NewFlightServiceClient(s.grpcConn)
}

// doGet runs DoGet(ticket) as case id and returns the messages' app
// metadata, the trailer and the call's status.
func (s *stack) doGet(tb testing.TB, id, ticket string, md ...string) ([]string, metadata.MD, error) {
	tb.Helper()
	ctx, c := s.flightCtx(tb, id, md...)
	st, err := c.DoGet(ctx, &flight.Ticket{Ticket: []byte(ticket)})
	if err != nil {
		return nil, nil, err
	}
	var got []string
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return got, st.Trailer(), nil
		}
		if err != nil {
			return got, st.Trailer(), err
		}
		got = append(got, string(m.GetAppMetadata()))
	}
}

// accessLogWithin bounds how late a request's access log line may reach
// Envoy's stdout: envoy/process has Envoy flush its logs every second.
const accessLogWithin = 5 * time.Second

// accessLog waits for the JSON access log line of the request whose
// x-request-id is id.
func (s *stack) accessLog(tb testing.TB, requestID string) map[string]any {
	tb.Helper()
	var last string
	deadline := time.Now().Add(accessLogWithin)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(s.envoy.Output(), "\n") {
			line = strings.TrimPrefix(line, "envoy: ")
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				tb.Fatalf("access log line %q is not JSON: %v", line, err)
			}
			if m["request_id"] == requestID {
				return m
			}
			last = line
		}
		select {
		case <-s.envoy.Done():
			tb.Fatalf("envoy exited: %v", s.envoy.Err())
		case <-time.After(50 * time.Millisecond): // polling Envoy's stdout, which has no event to wait on
		}
	}
	tb.Fatalf("no access log line with request_id %q within %v (last JSON line %q)", requestID, accessLogWithin, last)
	return nil
}

// deadAddr is an address nothing listens on.
func deadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// graphQLError is the shape of every JSON error body the ingress writes.
type graphQLError struct {
	Errors []struct {
		Message    string `json:"message"`
		Extensions struct {
			Code string `json:"code"`
		} `json:"extensions"`
	} `json:"errors"`
}

// errorCode returns the extensions.code of body's one GraphQL error, or
// why body is not one.
func errorCode(body string) string {
	var e graphQLError
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return fmt.Sprintf("not JSON (%v)", err)
	}
	if len(e.Errors) != 1 || e.Errors[0].Message == "" {
		return fmt.Sprintf("not one GraphQL error: %s", body)
	}
	return e.Errors[0].Extensions.Code
}
