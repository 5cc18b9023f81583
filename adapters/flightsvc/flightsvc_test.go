package flightsvc_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fraise-dev/fraise/adapters/flightsvc"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/internal/await"
)

const tenant = "11111111-1111-4111-8111-111111111111"

type fixture struct {
	reg    *prometheus.Registry
	client aflight.Client
	conn   *grpc.ClientConn
	signer *assertion.Signer
	src    *coretest.FlightSource
	callSigner
}

func mustServer(tb testing.TB) *fixture {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := assertion.NewSigner(priv, assertion.KeyID(pub), nil)
	if err != nil {
		tb.Fatal(err)
	}
	cat, err := flight.NewCatalog([]flight.Dataset{{Name: "ids", View: "v_ids",
		Columns: []flight.Column{{Name: "id", Type: flight.Type{Kind: flight.KindInt8}}}}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tickets, err := flight.NewTickets(make([]byte, 32), time.Minute, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	src := &coretest.FlightSource{Rows: -1} // endless
	reg := prometheus.NewRegistry()
	svc := flightsvc.New(flightsvc.Options{
		Metrics:  reg,
		Verifier: assertion.NewVerifier(map[string]ed25519.PublicKey{assertion.KeyID(pub): pub}, nil),
		Service: flight.NewService(flight.ServiceOptions{Catalog: cat, Tickets: tickets, Source: src,
			Batch: flight.BatchLimits{Rows: 1000, Bytes: 1 << 20}}),
	})
	g := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	f := &fixture{reg: reg, signer: signer, src: src, callSigner: callSigner{signer}}
	c, err := aflight.NewClientWithMiddleware(ln.Addr().String(), nil, nil,
		append(f.dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	f.client, f.conn = c, conn
	return f
}

type principalKey struct{}

// callSigner stands for extauthz in these tests: each call made with a
// context from as carries the assertion extauthz issues p for that call.
type callSigner struct{ signer *assertion.Signer }

// as makes the calls made with ctx carry, each, the assertion extauthz
// issues p for that call.
func (c callSigner) as(tb testing.TB, ctx context.Context, p core.Principal) context.Context {
	tb.Helper()
	return context.WithValue(ctx, principalKey{}, p)
}

// dialOptions sign every call of a client.
func (c callSigner) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(c.signUnary), grpc.WithChainStreamInterceptor(c.signStream)}
}

// extauthz binds a call as Envoy shows it the call: a unary call's one
// request message (its body, as the client encoded it), a stream's none.
func (c callSigner) assertionFor(ctx context.Context, method string, req any) context.Context {
	p, ok := ctx.Value(principalKey{}).(core.Principal)
	if !ok {
		return ctx
	}
	b := assertion.Binding{Audience: assertion.AudienceFlight, Method: "POST", Path: method}
	if m, ok := req.(proto.Message); ok {
		raw, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(raw)
		b.Body = hex.EncodeToString(sum[:])
	}
	tok, err := c.signer.Sign(p, assertiontest.RequestID(), b)
	if err != nil {
		panic(err)
	}
	return metadata.AppendToOutgoingContext(ctx, assertion.Header, tok)
}

func (c callSigner) signUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(c.assertionFor(ctx, method, req), method, req, reply, cc, opts...)
}

func (c callSigner) signStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(c.assertionFor(ctx, method, nil), desc, cc, method, opts...)
}

var alice = core.Principal{Subject: "alice", Tenant: tenant, Roles: []string{"analyst"}}

func TestCodeTable(t *testing.T) {
	tests := []struct {
		code core.Code
		want codes.Code
	}{
		{core.CodeInvalid, codes.InvalidArgument},
		{core.CodeNotFound, codes.NotFound},
		{core.CodeUnauthenticated, codes.Unauthenticated},
		{core.CodeForbidden, codes.PermissionDenied},
		{core.CodeRateLimited, codes.ResourceExhausted},
		{core.CodeTimeout, codes.DeadlineExceeded},
		{core.CodeUnavailable, codes.Unavailable},
		{core.CodeInternal, codes.Internal},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			if got := flightsvc.CodeOf(core.Errorf(tt.code, "x")); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got := flightsvc.CodeOf(errors.New("unclassified")); got != codes.Internal {
		t.Errorf("unclassified: got %v, want Internal", got)
	}
}

func TestEveryCallNeedsTheAssertion(t *testing.T) {
	f := mustServer(t)
	ctx := context.Background()
	desc := &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: []string{"ids"}}
	forged := metadata.AppendToOutgoingContext(ctx, assertion.Header, "eyJhbGciOiJub25lIn0.e30.")
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"GetFlightInfo", func(ctx context.Context) error { _, err := f.client.GetFlightInfo(ctx, desc); return err }},
		{"GetSchema", func(ctx context.Context) error { _, err := f.client.GetSchema(ctx, desc); return err }},
		{"ListFlights", func(ctx context.Context) error {
			s, err := f.client.ListFlights(ctx, &aflight.Criteria{})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
		{"DoGet", func(ctx context.Context) error {
			s, err := f.client.DoGet(ctx, &aflight.Ticket{Ticket: []byte("fr1.x.y")})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
	}
	for _, tt := range tests {
		for name, ctx := range map[string]context.Context{"none": ctx, "forged": forged} {
			t.Run(tt.name+" "+name, func(t *testing.T) {
				if err := tt.call(ctx); status.Code(err) != codes.Unauthenticated {
					t.Errorf("got %v, want Unauthenticated", err)
				}
			})
		}
	}
	t.Run("health needs none", func(t *testing.T) {
		res, err := healthpb.NewHealthClient(f.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("got %v, %v, want SERVING", res, err)
		}
	})
}

// TestCancelledDoGetStopsTheExport cuts a client off mid-stream: the source
// must see its context end, every batch must be released, and no goroutine
// may remain.
func TestCancelledDoGetStopsTheExport(t *testing.T) {
	f := mustServer(t)
	ctx := f.as(t, context.Background(), alice)
	info, err := f.client.GetFlightInfo(ctx, &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: []string{"ids"}})
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	cctx, cancel := context.WithCancel(ctx)
	stream, err := f.client.DoGet(cctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	// The first message is the schema; count only those carrying rows, so
	// the metric check below rests on rows the client really received.
	for batches := 0; batches < 3; {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.DataBody) > 0 {
			batches++
		}
	}
	cancel()
	ended := f.src.AwaitEnd(1, 10*time.Second)
	if len(ended) == 0 {
		t.Fatal("export still running 10s after the client left")
	}
	if ended[0] == nil {
		t.Error("export ended without an error after the client left")
	}
	if !await.Within(10*time.Second, func() bool { return runtime.NumGoroutine() <= base && f.src.Unreleased() == 0 }) {
		t.Fatalf("%d goroutines (baseline %d), %d bytes of batches unreleased", runtime.NumGoroutine(), base, f.src.Unreleased())
	}
	if rows := counter(t, f.reg, "fraise_flight_exported_rows_total", ""); rows < 3000 {
		t.Errorf("fraise_flight_exported_rows_total: got %v, want at least the 3000 rows read", rows)
	}
}

func TestTicketBoundToTenant(t *testing.T) {
	f := mustServer(t)
	ctx := context.Background()
	info, err := f.client.GetFlightInfo(f.as(t, ctx, alice), &aflight.FlightDescriptor{Type: aflight.DescriptorCMD, Cmd: []byte(`{"dataset":"ids","limit":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	other := alice
	other.Tenant = "22222222-2222-4222-8222-222222222222"
	s, err := f.client.DoGet(f.as(t, ctx, other), info.Endpoint[0].Ticket)
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "another principal") {
		t.Errorf("got %v, want PermissionDenied", err)
	}
	// The server counts a call as its handler returns, which may be just
	// after the client saw the answer.
	for _, want := range []string{`code="OK",method="GetFlightInfo"`, `code="PermissionDenied",method="DoGet"`} {
		if !await.Within(5*time.Second, func() bool { return counter(t, f.reg, "fraise_flight_calls_total", want) == 1 }) {
			t.Fatalf("fraise_flight_calls_total{%s}: got %v, want 1", want, counter(t, f.reg, "fraise_flight_calls_total", want))
		}
	}
}

// counter returns the value of the series of name whose labels, written
// as name="value" pairs joined by commas, are labels.
func counter(tb testing.TB, reg *prometheus.Registry, name, labels string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			if strings.Join(parts, ",") == labels {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestAssertionBindsTheCall shows the Flight listener running a call only
// with the assertion extauthz issued for it, once (security #13, defect 4).
func TestAssertionBindsTheCall(t *testing.T) {
	f := mustServer(t)
	ids := &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: []string{"ids"}}
	other := &aflight.FlightDescriptor{Type: aflight.DescriptorCMD, Cmd: []byte(`{"dataset":"ids","limit":1}`)}
	hash := func(d *aflight.FlightDescriptor) string {
		raw, err := proto.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(raw)
		return hex.EncodeToString(sum[:])
	}
	getFlightInfo := "/arrow.flight.protocol.FlightService/GetFlightInfo"
	with := func(b assertion.Binding) (context.Context, string) {
		tok := assertiontest.Sign(t, f.signer, alice, b)
		return metadata.AppendToOutgoingContext(context.Background(), assertion.Header, tok), tok
	}
	flightB := func(path, body string) assertion.Binding {
		return assertion.Binding{Audience: assertion.AudienceFlight, Method: "POST", Path: path, Body: body}
	}
	tests := []struct {
		name string
		b    assertion.Binding
		desc *aflight.FlightDescriptor
		want codes.Code
	}{
		{name: "the call it was issued for", b: flightB(getFlightInfo, hash(ids)), desc: ids, want: codes.OK},
		{name: "another descriptor", b: flightB(getFlightInfo, hash(ids)), desc: other, want: codes.PermissionDenied},
		{name: "no descriptor named", b: flightB(getFlightInfo, ""), desc: ids, want: codes.PermissionDenied},
		{name: "another method", b: flightB("/arrow.flight.protocol.FlightService/GetSchema", hash(ids)), desc: ids, want: codes.PermissionDenied},
		{name: "another gRPC method name", b: assertion.Binding{Audience: assertion.AudienceFlight, Method: "GET", Path: getFlightInfo, Body: hash(ids)},
			desc: ids, want: codes.PermissionDenied},
		{name: "a GraphQL assertion", b: assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: getFlightInfo, Body: hash(ids)},
			desc: ids, want: codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, _ := with(tt.b)
			if _, err := f.client.GetFlightInfo(ctx, tt.desc); status.Code(err) != tt.want {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("the same assertion twice", func(t *testing.T) {
		ctx, _ := with(flightB(getFlightInfo, hash(ids)))
		if _, err := f.client.GetFlightInfo(ctx, ids); err != nil {
			t.Fatalf("first: got %v, want OK", err)
		}
		if _, err := f.client.GetFlightInfo(ctx, ids); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("replayed: got %v, want Unauthenticated", err)
		}
	})
	t.Run("a stream is bound by method and path", func(t *testing.T) {
		info, err := f.client.GetFlightInfo(f.as(t, context.Background(), alice), other)
		if err != nil {
			t.Fatal(err)
		}
		doGet := "/arrow.flight.protocol.FlightService/DoGet"
		for _, tc := range []struct {
			name string
			b    assertion.Binding
			want codes.Code
		}{
			{name: "issued for it", b: flightB(doGet, ""), want: codes.OK},
			{name: "issued for another method", b: flightB("/arrow.flight.protocol.FlightService/DoPut", ""), want: codes.PermissionDenied},
			{name: "naming a body a stream cannot have been shown with", b: flightB(doGet, hash(ids)), want: codes.PermissionDenied},
		} {
			ctx, _ := with(tc.b)
			s, err := f.client.DoGet(ctx, info.Endpoint[0].Ticket)
			if err == nil {
				_, err = s.Recv()
			}
			if status.Code(err) != tc.want {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}
