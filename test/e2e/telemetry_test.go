package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// span is one span a traceReceiver received, its ids in hex.
type span struct {
	service, name             string
	kind                      tracepb.Span_SpanKind
	traceID, spanID, parentID string
	attrs                     map[string]string // the string attributes
}

func (s span) String() string {
	return fmt.Sprintf("%s %q %s trace=%s span=%s parent=%s", s.service, s.name, s.kind, s.traceID, s.spanID, s.parentID)
}

// traceReceiver is an OTLP/gRPC trace collector on a loopback port: it
// keeps every span exported to it and says when more arrive.
type traceReceiver struct {
	collectortracepb.UnimplementedTraceServiceServer
	addr string

	mu      sync.Mutex
	spans   []span
	arrived chan struct{} // closed and replaced on every export
}

func mustTraceReceiver(tb testing.TB) *traceReceiver {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &traceReceiver{addr: ln.Addr().String(), arrived: make(chan struct{})}
	g := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(g, r)
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	return r
}

// Export implements collectortracepb.TraceServiceServer.
func (r *traceReceiver) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	var got []span
	for _, rs := range req.GetResourceSpans() {
		service := stringAttr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range sp.GetAttributes() {
					if v, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
						attrs[kv.GetKey()] = v.StringValue
					}
				}
				got = append(got, span{attrs: attrs,
					service: service, name: sp.GetName(), kind: sp.GetKind(),
					traceID: hex.EncodeToString(sp.GetTraceId()), spanID: hex.EncodeToString(sp.GetSpanId()),
					parentID: hex.EncodeToString(sp.GetParentSpanId()),
				})
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	close(r.arrived)
	r.arrived = make(chan struct{})
	r.mu.Unlock()
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func stringAttr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// waitTrace waits until the spans of trace id satisfy done (the exporters
// batch: Envoy's flushes every five seconds, the SDK's too), or fails the
// test at the deadline with what did arrive.
func (r *traceReceiver) waitTrace(tb testing.TB, id string, done func([]span) bool) []span {
	tb.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		var spans []span
		for _, s := range r.spans {
			if s.traceID == id {
				spans = append(spans, s)
			}
		}
		arrived := r.arrived
		r.mu.Unlock()
		if done(spans) {
			return spans
		}
		select {
		case <-arrived:
		case <-deadline.C:
			r.mu.Lock()
			all := slices.Clone(r.spans)
			r.mu.Unlock()
			tb.Fatalf("trace %s incomplete after 30s; its spans:\n%s\nevery span received:\n%s", id, spanList(spans), spanList(all))
		}
	}
}

func spanList(spans []span) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString("  " + s.String() + "\n")
	}
	return b.String()
}

// findSpan returns the first span of service with kind, and whether there is one.
func findSpan(spans []span, service string, kind tracepb.Span_SpanKind, name string) (span, bool) {
	for _, s := range spans {
		if s.service == service && s.kind == kind && (name == "" || s.name == name) {
			return s, true
		}
	}
	return span{}, false
}

// logLines collects the stack's log and finds Envoy's access log lines in
// it.
type logLines struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	arrived chan struct{}
}

func newLogLines() *logLines { return &logLines{arrived: make(chan struct{})} }

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.arrived)
	l.arrived = make(chan struct{})
	return l.buf.Write(p)
}

// accessLog waits for Envoy's access log line with the request id and
// returns it decoded; there must be one.
func (l *logLines) accessLog(tb testing.TB, requestID string) map[string]any {
	tb.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		text, arrived := l.buf.String(), l.arrived
		l.mu.Unlock()
		var found []map[string]any
		sc := bufio.NewScanner(strings.NewReader(text))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "envoy: ")
			if !ok || !strings.HasPrefix(line, "{") {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				tb.Fatalf("access log line is not JSON: %v\n%s", err, line)
			}
			if m["request_id"] == requestID {
				found = append(found, m)
			}
		}
		if len(found) > 1 {
			tb.Errorf("got %d access log lines with request_id %s, want 1: %v", len(found), requestID, found)
		}
		if len(found) > 0 {
			return found[0]
		}
		select {
		case <-arrived:
		case <-deadline.C:
			tb.Fatalf("no access log line with request_id %s after 30s; the stack's log:\n%s", requestID, text)
		}
	}
}

// telemetryTOML sends every process's spans to the receiver at %s, every
// request sampled, and declares one Flight dataset over the demo's users.
const telemetryTOML = `
[telemetry]
otlp_endpoint = %q
sample_ratio = 1
[[flight.datasets]]
name = "people.users"
graphql_type = "User"
columns = [{ name = "id", type = "uuid" }, { name = "name", type = "text" }]
`

// The services the stack's processes name themselves in their spans.
const (
	serviceIngress = "fraise-ingress"
	serviceAuthz   = "fraise-extauthz"
	serviceCore    = "fraise-core"
	// The rate limiter's server, envoyproxy/ratelimit, traces too.
	serviceRateLimit = "fraise-ratelimit"
	checkSpanName    = "envoy.service.auth.v3.Authorization/Check"
)

// TestTraceThroughTheStack sends a GraphQL request and a Flight call
// through Envoy to a stack exporting every span to a receiver of its own,
// and checks that each is one trace (Envoy's spans, extauthz's Check, the
// core's server span, each component named) and one access log line that
// carries the request id the client got and the trace's ids.
func TestTraceThroughTheStack(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	rcv := mustTraceReceiver(t)
	logs := newLogLines()
	s := stack.StartWith(t, stack.Options{TOML: fmt.Sprintf(telemetryTOML, rcv.addr), Log: logs})

	// connected checks that the trace holds Envoy's server span, extauthz's
	// Check and the core's server span, the latter two children of Envoy's
	// spans, and returns Envoy's server span.
	connected := func(t *testing.T, id string) span {
		t.Helper()
		var envoySrv, check, core span
		spans := rcv.waitTrace(t, id, func(spans []span) bool {
			var ok1, ok2, ok3 bool
			envoySrv, ok1 = findSpan(spans, serviceIngress, tracepb.Span_SPAN_KIND_SERVER, "")
			check, ok2 = findSpan(spans, serviceAuthz, tracepb.Span_SPAN_KIND_SERVER, checkSpanName)
			core, ok3 = findSpan(spans, serviceCore, tracepb.Span_SPAN_KIND_SERVER, "")
			return ok1 && ok2 && ok3
		})
		envoyIDs := map[string]bool{}
		for _, sp := range spans {
			if sp.service == serviceIngress {
				envoyIDs[sp.spanID] = true
			}
			if !slices.Contains([]string{serviceIngress, serviceAuthz, serviceCore, serviceRateLimit}, sp.service) {
				t.Errorf("span %v names service %q, want the Fraise component that made it", sp, sp.service)
			}
		}
		if envoySrv.parentID != "" {
			t.Errorf("Envoy's server span has parent %s, want none: the trace starts at the ingress", envoySrv.parentID)
		}
		for _, c := range []span{check, core} {
			if !envoyIDs[c.parentID] {
				t.Errorf("%s's span %q has parent %q, want one of Envoy's spans:\n%s", c.service, c.name, c.parentID, spanList(spans))
			}
		}
		return envoySrv
	}

	t.Run("a GraphQL request is one trace from Envoy through extauthz to the core, and one access log line", func(t *testing.T) {
		tok := s.Token(t, demo.TenantAcme, "alice", "viewer")
		const ua = "fraise-e2e/telemetry"
		status, hdr, g := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id name } }", map[string]string{
			"Authorization": "Bearer " + tok, "User-Agent": ua,
		})
		if status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("got status %d errors %+v, want 200", status, g.Errors)
		}
		rid := hdr.Get("X-Request-Id")
		if rid == "" {
			t.Fatalf("got no x-request-id on the response, want the id Envoy gave the request: %v", hdr)
		}
		line := logs.accessLog(t, rid)
		traceID, _ := line["trace_id"].(string)
		if len(traceID) != 32 {
			t.Fatalf("got trace_id %q in the access log, want 32 hex digits:\n%v", traceID, line)
		}
		envoySrv := connected(t, traceID)
		if got := line["span_id"]; got != envoySrv.spanID {
			t.Errorf("got span_id %v in the access log, want Envoy's server span %s", got, envoySrv.spanID)
		}

		cert := mustClientCert(t, s)
		for _, c := range []struct {
			name, key string
			want      func(string) bool
			wantText  string
		}{
			{"method", "method", eq("POST"), "POST"},
			{"path without the query", "path", eq("/graphql"), "/graphql"},
			{"status", "status", eq("200"), "200"},
			{"no response flags", "flags", eq("-"), "-"},
			{"tenant from extauthz", "tenant", eq(demo.TenantAcme), demo.TenantAcme},
			{"subject from extauthz", "subject", eq("alice"), "alice"},
			{"authority", "authority", eq(s.Addrs.Gateway), s.Addrs.Gateway},
			{"user agent", "user_agent", eq(ua), ua},
			{"route", "route", eq("graphql"), "graphql"},
			{"upstream cluster", "upstream", eq("core_http"), "core_http"},
			{"upstream host", "upstream_host", eq(s.Addrs.CoreHTTP), s.Addrs.CoreHTTP},
			{"client certificate subject", "client_subject", contains("CN=" + cert.Subject.CommonName), "CN=" + cert.Subject.CommonName},
			{"client certificate DNS SAN", "client_dns_san", eq(strings.Join(cert.DNSNames, ",")), strings.Join(cert.DNSNames, ",")},
			{"client address", "client", hasPrefix("127.0.0.1:"), "127.0.0.1:<port>"},
			{"protocol", "protocol", hasPrefix("HTTP/"), "HTTP/..."},
			{"bytes received", "bytes_in", positive, "> 0"},
			{"bytes sent", "bytes_out", positive, "> 0"},
			{"duration", "duration", nonNegative, ">= 0 (ms)"},
			{"start time", "time", rfc3339, "an RFC 3339 time"},
		} {
			v, ok := line[c.key]
			got := fmt.Sprint(v)
			if !ok || !c.want(got) {
				t.Errorf("%s: got %s=%q, want %s", c.name, c.key, got, c.wantText)
			}
		}
	})

	t.Run("a Flight call is one trace from Envoy through extauthz to the core's Flight server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := s.FlightClient(t, s.Addrs.Gateway)
		tok := s.Token(t, demo.TenantAcme, "alice", "analyst")
		var md metadata.MD
		_, err := c.GetFlightInfo(stack.Bearer(ctx, tok), &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"people", "users"}}, grpc.Header(&md))
		if err != nil {
			t.Fatalf("GetFlightInfo: %v", err)
		}
		var rid string
		if v := md.Get("x-request-id"); len(v) > 0 {
			rid = v[0]
		}
		if rid == "" {
			t.Fatalf("got no x-request-id in the response metadata, want the id Envoy gave the call: %v", md)
		}
		line := logs.accessLog(t, rid)
		traceID, _ := line["trace_id"].(string)
		envoySrv := connected(t, traceID)
		if got := line["span_id"]; got != envoySrv.spanID {
			t.Errorf("got span_id %v in the access log, want Envoy's server span %s", got, envoySrv.spanID)
		}
		for key, want := range map[string]string{
			"path": "/arrow.flight.protocol.FlightService/GetFlightInfo", "route": "flight_GetFlightInfo",
			"upstream": "core_flight", "upstream_host": s.Addrs.CoreFlight, "grpc_status": "0",
			"tenant": demo.TenantAcme, "subject": "alice",
		} {
			if got := fmt.Sprint(line[key]); got != want {
				t.Errorf("got %s=%q, want %q", key, got, want)
			}
		}
	})
}

func eq(want string) func(string) bool { return func(got string) bool { return got == want } }
func contains(want string) func(string) bool {
	return func(got string) bool { return strings.Contains(got, want) }
}
func hasPrefix(want string) func(string) bool {
	return func(got string) bool { return strings.HasPrefix(got, want) }
}
func positive(got string) bool    { n, err := strconv.ParseFloat(got, 64); return err == nil && n > 0 }
func nonNegative(got string) bool { n, err := strconv.ParseFloat(got, 64); return err == nil && n >= 0 }
func rfc3339(got string) bool     { _, err := time.Parse(time.RFC3339Nano, got); return err == nil }

func mustClientCert(tb testing.TB, s *stack.Stack) *x509.Certificate {
	tb.Helper()
	b, err := os.ReadFile(devcerts.FilesIn(filepath.Join(s.Dir, "certs")).ClientCert)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatal("client certificate: no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
