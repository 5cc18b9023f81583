package envoy_test

// Real Envoy on envoy.Build's configuration: each scenario the
// configuration promises, shown on Envoy itself with real upstreams
// (stack_test.go).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
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
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	grpcstatuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/extauthz/operation"
)

const query = `{"query":"{ users { id } }"}`

// TestIngress runs the scenarios that need every upstream up on one Envoy.
func TestIngress(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	t.Run("mTLS", func(t *testing.T) { testMTLS(t, s) })
	t.Run("upstream mTLS", func(t *testing.T) { testUpstreamMTLS(t, s) })
	t.Run("identity headers stripped", func(t *testing.T) { testIdentityHeadersStripped(t, s) })
	t.Run("check request", func(t *testing.T) { testCheckRequest(t, s) })
	t.Run("ext_authz answers", func(t *testing.T) { testExtAuthzAnswers(t, s) })
	t.Run("body to ext_authz", func(t *testing.T) { testBodyToExtAuthz(t, s) })
	t.Run("rate limit", func(t *testing.T) { testRateLimit(t, s) })
	t.Run("local replies", func(t *testing.T) { testLocalReplies(t, s) })
	t.Run("paths", func(t *testing.T) { testPaths(t, s) })
	t.Run("streaming", func(t *testing.T) { testStreaming(t, s) })
	t.Run("access log", func(t *testing.T) { testAccessLog(t, s) })
	t.Run("admin", func(t *testing.T) { testAdmin(t, s) })
}

// handshake dials the ingress with c and reads: TLS 1.3 reports a refused
// client certificate on the first read, not in the handshake. It returns
// the protocol negotiated, having sent an HTTP/1.1 request over one that
// is not h2 and read its first byte back.
func handshake(addr string, c *tls.Config) (string, error) {
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	proto := conn.ConnectionState().NegotiatedProtocol
	if proto == "h2" {
		return proto, nil // a real request over h2 is the clients' job below
	}
	// Write only once the handshake is known good: writing to a connection
	// Envoy is closing could fail before the alert is read.
	if err := conn.Handshake(); err != nil {
		return proto, err
	}
	if _, err := io.WriteString(conn, "GET /graphql HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return proto, err
	}
	_, err = conn.Read(make([]byte, 1))
	return proto, err
}

// refused dials the ingress with c and reads until Envoy's verdict on
// the handshake arrives: its alert, or nothing if it accepted.
func refused(addr string, c *tls.Config) error {
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	// An accepted client is sent nothing until it asks: the read times out.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}

func testMTLS(t *testing.T, s *stack) {
	other, err := devcerts.Generate(filepath.Join(t.TempDir(), "other"), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		conf    func() *tls.Config
		ok      bool
		wantALP string // the protocol negotiated, or Envoy's alert when refused
	}{
		{"no client certificate", func() *tls.Config { return clientTLS(t, s.certs, "", "") }, false, "certificate required"},
		{"certificate of another CA", func() *tls.Config { return clientTLS(t, s.certs, other.ClientCert, other.ClientKey) }, false, "unknown certificate authority"},
		{"TLS 1.1", func() *tls.Config {
			c := s.clientTLS.Clone()
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}, false, "protocol version not supported"},
		{"client certificate, HTTP/1.1", func() *tls.Config {
			c := s.clientTLS.Clone()
			c.NextProtos = []string{"http/1.1"}
			return c
		}, true, "http/1.1"},
		{"client certificate, h2", func() *tls.Config {
			c := s.clientTLS.Clone()
			c.NextProtos = []string{"h2", "http/1.1"}
			return c
		}, true, "h2"},
		{"TLS 1.2 only", func() *tls.Config {
			c := s.clientTLS.Clone()
			c.MaxVersion = tls.VersionTLS12
			c.NextProtos = []string{"http/1.1"}
			return c
		}, true, "http/1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.ok {
				if proto, err := handshake(s.envoy.Addr, tt.conf()); err != nil || proto != tt.wantALP {
					t.Fatalf("got %v over %q, want a connection over %q", err, proto, tt.wantALP)
				}
				return
			}
			// The refusal is Envoy's (a TLS alert), not the client's.
			if err := refused(s.envoy.Addr, tt.conf()); err == nil || !strings.Contains(err.Error(), "remote error: tls: "+tt.wantALP) {
				t.Fatalf("got %v, want Envoy to refuse the handshake: %s", err, tt.wantALP)
			}
		})
	}
	// A refused client reaches nothing: no check, no upstream.
	id := s.newCase()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, s.certs, "", "")}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+s.envoy.Addr+"/graphql", strings.NewReader(query))
	req.Header.Set(caseHeader, id)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d, want the connection refused", resp.StatusCode)
	}
	if n := len(s.authz.requests(id)) + len(s.core.requests(id)); n != 0 {
		t.Fatalf("a client without a certificate reached extauthz or the core (%d requests)", n)
	}
}

// testUpstreamMTLS: Envoy presents the gateway certificate to every
// upstream whose cluster has TLS and checks theirs against
// UpstreamServerName (the servers' certificate is for localhost).
func testUpstreamMTLS(t *testing.T, s *stack) {
	id := s.newCase()
	if r := s.post(t, s.h2, id, query); r.Status != 200 {
		t.Fatalf("got %d %s, want 200", r.Status, r.Body)
	}
	if _, _, err := s.doGet(t, id, "rows"); err != nil {
		t.Fatalf("DoGet: %v", err)
	}
	want := peerInfo{TLS: true, SNI: "localhost", SANs: []string{devcerts.GatewayName}}
	core := s.core.requests(id)
	calls := s.flight.callsOf(id)
	if len(core) != 1 || len(calls) != 1 {
		t.Fatalf("got %d core requests and %d Flight calls, want 1 each", len(core), len(calls))
	}
	for _, u := range []struct {
		cluster string
		got     peerInfo
	}{
		{envoy.ClusterCoreHTTP, core[0].Peer},
		{envoy.ClusterCoreFlight, calls[0].Peer},
		{envoy.ClusterAuthz, s.authz.lastPeer()},
		{envoy.ClusterRateLimit, s.rls.lastPeer()},
	} {
		w := want
		if clusterOf(t, s.res, u.cluster).GetTransportSocket() == nil {
			w = peerInfo{}
		}
		if fmt.Sprint(u.got) != fmt.Sprint(w) {
			t.Errorf("%s saw Envoy as %+v, want %+v", u.cluster, u.got, w)
		}
	}
	if clusterOf(t, s.res, envoy.ClusterAuthz).GetTransportSocket() == nil {
		t.Error("cluster extauthz has no TLS")
	}
}

// identityOf returns the x-fraise-* headers of h, lower-cased, each with
// all its values.
func identityOf(h http.Header) map[string][]string {
	m := map[string][]string{}
	for k, v := range h {
		if strings.HasPrefix(strings.ToLower(k), envoy.IdentityHeaderPrefix) {
			m[strings.ToLower(k)] = append(m[strings.ToLower(k)], v...)
		}
	}
	return m
}

func identityMap(pairs [][2]string) map[string][]string {
	m := map[string][]string{}
	for _, p := range pairs {
		m[p[0]] = append(m[p[0]], p[1])
	}
	return m
}

// testIdentityHeadersStripped: whatever x-fraise-* headers a client sends,
// in any case, repeated, over HTTP/1.1, HTTP/2 or as gRPC metadata,
// neither extauthz nor the core sees them; the core sees exactly the
// identity extauthz set, or none.
func testIdentityHeadersStripped(t *testing.T, s *stack) {
	forged := []string{
		"x-fraise-tenant: forged", "X-Fraise-Tenant: forged2", "X-FRAISE-TENANT: forged3", "x-FrAiSe-TeNaNt: forged4",
		"x-fraise-roles: admin", "X-Fraise-Roles: admin", "x-fraise-tier: platinum", "X-FRAISE-SUBJECT: root",
		"x-fraise-op: write", "x-fraise-: empty-suffix", "X-Fraise-Anything-Else: 1",
	}
	for _, tt := range []struct {
		name  string
		allow func(id string) [][2]string // what extauthz sets
		send  func(t *testing.T, id string)
	}{
		{"HTTP/1.1, every case and repetition", identity, func(t *testing.T, id string) {
			r := s.raw(t, s.rawRequest(id, "POST", "/graphql", query, forged...))
			if r.Status != 200 {
				t.Fatalf("got %d %s, want 200", r.Status, r.Body)
			}
		}},
		{"HTTP/1.1, extauthz sets no identity", func(string) [][2]string { return nil }, func(t *testing.T, id string) {
			r := s.raw(t, s.rawRequest(id, "POST", "/graphql", query, forged...))
			if r.Status != 200 {
				t.Fatalf("got %d %s, want 200", r.Status, r.Body)
			}
		}},
		{"HTTP/2, repeated", identity, func(t *testing.T, id string) {
			var hs [][2]string
			for _, f := range forged {
				k, v, _ := strings.Cut(f, ": ")
				hs = append(hs, [2]string{k, v})
			}
			if r := s.post(t, s.h2, id, query, hs...); r.Status != 200 || r.Proto != "HTTP/2.0" {
				t.Fatalf("got %s %d %s, want 200 over HTTP/2", r.Proto, r.Status, r.Body)
			}
		}},
		{"HTTP/2 request trailers", identity, func(t *testing.T, id string) {
			req, err := http.NewRequest(http.MethodPost, "https://"+s.envoy.Addr+"/graphql", strings.NewReader(query))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(caseHeader, id)
			req.Trailer = http.Header{"X-Fraise-Tenant": {"forged"}, "X-Fraise-Roles": {"admin"}}
			resp, err := s.h2.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("got %d, want 200", resp.StatusCode)
			}
		}},
		{"gRPC metadata", identity, func(t *testing.T, id string) {
			var md []string
			for _, f := range forged {
				k, v, _ := strings.Cut(f, ": ")
				md = append(md, strings.ToLower(k), v)
			}
			md = append(md, "x-fraise-tenant-bin", "\x00\x01forged")
			if _, _, err := s.doGet(t, id, "rows", md...); err != nil {
				t.Fatalf("DoGet: %v", err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			want := tt.allow(id)
			s.scriptAuthz(id, allowWith(want))
			tt.send(t, id)
			checks := s.authz.requests(id)
			if len(checks) != 1 {
				t.Fatalf("extauthz was asked %d times, want once", len(checks))
			}
			for k := range checks[0].GetAttributes().GetRequest().GetHttp().GetHeaders() {
				if strings.HasPrefix(strings.ToLower(k), envoy.IdentityHeaderPrefix) {
					t.Errorf("extauthz saw the client's %s", k)
				}
			}
			var got map[string][]string
			if calls := s.flight.callsOf(id); len(calls) == 1 {
				got = identityOf(http.Header(calls[0].MD))
			} else if reqs := s.core.requests(id); len(reqs) == 1 {
				got = identityOf(reqs[0].Header)
				if tr := identityOf(reqs[0].Trailer); len(tr) > 0 {
					t.Errorf("core got identity trailers %v", tr)
				}
			} else {
				t.Fatalf("got %d core requests and %d Flight calls, want one", len(reqs), len(calls))
			}
			if fmt.Sprint(got) != fmt.Sprint(identityMap(want)) {
				t.Errorf("upstream got identity %v, want exactly %v", got, identityMap(want))
			}
		})
	}
	// Request trailers are no headers: the early header mutation does not
	// see them. Over HTTP/1.1 to core_http Envoy drops them; over HTTP/2
	// to core_flight it would forward them, and a gRPC server treats
	// trailers from a client as a protocol error on the whole connection
	// (grpc-go answers GOAWAY), so one client could reset every stream
	// Envoy has open to the core. No upstream gets a client's trailers.
	t.Run("gRPC request trailers reach no upstream", func(t *testing.T) {
		t.Parallel()
		// Another client's export, open on Envoy's connection to the core.
		other := s.newCase()
		ctx, c := s.flightCtx(t, other)
		st, err := c.DoGet(ctx, &flight.Ticket{Ticket: []byte("acked")})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := st.Recv(); err != nil || string(m.GetAppMetadata()) != "row-0" {
			t.Fatalf("other export: got %v, %v", m, err)
		}

		id := s.newCase()
		req, err := http.NewRequest(http.MethodPost, "https://"+s.envoy.Addr+envoy.FlightPrefix+"DoGet",
			bytes.NewReader(grpcFrame(t, &flight.Ticket{Ticket: []byte("rows")})))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(caseHeader, id)
		req.Header.Set("content-type", "application/grpc")
		req.Header.Set("te", "trailers")
		req.Trailer = http.Header{"X-Fraise-Tenant": {"forged"}, "X-Fraise-Roles": {"admin"}, "X-Other": {"1"}}
		resp, err := s.h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if gs := resp.Trailer.Get("grpc-status") + resp.Header.Get("grpc-status"); resp.StatusCode != 200 || gs != "0" {
			t.Errorf("call with trailers: got %d grpc-status %q (%s), want it served", resp.StatusCode, gs,
				resp.Header.Get("grpc-message"))
		}
		if calls := s.flight.callsOf(id); len(calls) != 1 {
			t.Errorf("Flight upstream got %d calls, want 1", len(calls))
		} else if got, want := identityOf(http.Header(calls[0].MD)), identityMap(identity(id)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Flight upstream got identity %v, want exactly %v", got, want)
		}

		for i := 1; i < 3; i++ {
			s.flight.ack(other)
			if m, err := st.Recv(); err != nil || string(m.GetAppMetadata()) != fmt.Sprintf("row-%d", i) {
				t.Fatalf("other export, row %d: got %v, %v: another client's trailers broke it", i, m, err)
			}
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("other export: got %v, want its end", err)
		}
	})
	t.Run("underscore spelling refused", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		r := s.raw(t, s.rawRequest(id, "POST", "/graphql", query, "x_fraise_tenant: forged"))
		if r.Status != 400 {
			t.Fatalf("got %d %s, want 400: a header with underscores could reach an upstream as x-fraise-tenant", r.Status, r.Body)
		}
		if n := len(s.authz.requests(id)) + len(s.core.requests(id)); n != 0 {
			t.Fatalf("the refused request reached extauthz or the core (%d)", n)
		}
	})
}

func testCheckRequest(t *testing.T, s *stack) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	t.Run("HTTP/2, forwarded: external", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		r := s.post(t, s.h2, id, query, [2]string{"authorization", "Bearer t0ken"}, [2]string{"traceparent", traceparent},
			[2]string{"x-forwarded-for", "203.0.113.9"}, [2]string{"x-request-id", "client-chosen"})
		if r.Status != 200 {
			t.Fatalf("got %d %s, want 200", r.Status, r.Body)
		}
		core := s.core.requests(id)
		if len(core) != 1 {
			t.Fatalf("core got %d requests, want 1", len(core))
		}
		h := core[0].Header
		if got := h.Get("authorization"); got != "" {
			t.Errorf("core got authorization %q, want it removed by extauthz", got)
		}
		if got := h.Get("traceparent"); !strings.Contains(got, "4bf92f3577b34da6a3ce929d0e0e4736") {
			t.Errorf("core got traceparent %q, want the client's trace continued", got)
		}
		if core[0].Proto != "HTTP/1.1" || core[0].Body != query {
			t.Errorf("core got %s body %q, want HTTP/1.1 with the query", core[0].Proto, core[0].Body)
		}
		for _, k := range []string{"x-envoy-expected-rq-timeout-ms", "x-envoy-upstream-service-time"} {
			if h.Get(k) != "" {
				t.Errorf("core got %s: the router's x-envoy headers are suppressed", k)
			}
		}
		if r.Header.Get("server") != "fraise-core" || r.Header.Get("x-envoy-upstream-service-time") != "" {
			t.Errorf("got server %q, x-envoy-upstream-service-time %q: want the core's Server and no x-envoy headers",
				r.Header.Get("server"), r.Header.Get("x-envoy-upstream-service-time"))
		}
		checks := s.authz.requests(id)
		if len(checks) != 1 {
			t.Fatalf("extauthz asked %d times, want once", len(checks))
		}
		cr := checks[0]
		hr := cr.GetAttributes().GetRequest().GetHttp()
		if hr.GetMethod() != "POST" || hr.GetPath() != "/graphql" || string(hr.GetRawBody()) != query || hr.GetSize() != int64(len(query)) {
			t.Errorf("CheckRequest http = %s %s body %q size %d", hr.GetMethod(), hr.GetPath(), hr.GetRawBody(), hr.GetSize())
		}
		if hr.GetHost() != s.envoy.Addr || hr.GetScheme() != "https" || hr.GetProtocol() != "HTTP/2" {
			t.Errorf("CheckRequest host %q scheme %q protocol %q, want %s https HTTP/2", hr.GetHost(), hr.GetScheme(), hr.GetProtocol(), s.envoy.Addr)
		}
		hs := hr.GetHeaders()
		for k, want := range map[string]string{
			":method": "POST", ":path": "/graphql", ":authority": s.envoy.Addr, ":scheme": "https",
			"authorization": "Bearer t0ken", "x-envoy-auth-partial-body": "false", "x-forwarded-proto": "https",
			"content-type": "application/json",
			// Forwarded through another hop, the request is external.
			"x-envoy-external-address": "127.0.0.1", "x-envoy-internal": "",
		} {
			if hs[k] != want {
				t.Errorf("CheckRequest header %s = %q, want %q", k, hs[k], want)
			}
		}
		// Envoy appends the peer to x-forwarded-for, or, for a loopback
		// peer, its own host address (not 127.0.0.1).
		if xff := strings.Split(hs["x-forwarded-for"], ","); len(xff) != 2 || xff[0] != "203.0.113.9" || net.ParseIP(xff[1]) == nil ||
			h.Get("x-forwarded-for") != hs["x-forwarded-for"] {
			t.Errorf("got x-forwarded-for %q (core %q), want the client's then one hop Envoy added", hs["x-forwarded-for"], h.Get("x-forwarded-for"))
		}
		if rid := hs["x-request-id"]; rid == "" || rid == "client-chosen" || rid != h.Get("x-request-id") {
			t.Errorf("extauthz got request id %q, core %q: want an external client's id replaced, the same for both", rid, h.Get("x-request-id"))
		}
		if _, err := strconv.ParseUint(hr.GetId(), 10, 64); err != nil {
			t.Errorf("got id %q, want Envoy's decimal stream id", hr.GetId())
		}
		src, dst := cr.GetAttributes().GetSource(), cr.GetAttributes().GetDestination()
		if src.GetPrincipal() != "fraise-dev-client" || dst.GetPrincipal() != "localhost" {
			t.Errorf("got principals %q → %q, want the client certificate's SAN → the listener's", src.GetPrincipal(), dst.GetPrincipal())
		}
		if sa := src.GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() == 0 {
			t.Errorf("got source address %v, want the client's", sa)
		}
		da := dst.GetAddress().GetSocketAddress()
		if got := fmt.Sprintf("%s:%d", da.GetAddress(), da.GetPortValue()); got != s.envoy.Addr {
			t.Errorf("got destination address %s, want %s", got, s.envoy.Addr)
		}
		pemText, err := url.QueryUnescape(src.GetCertificate())
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode([]byte(pemText))
		if blk == nil {
			t.Fatalf("got certificate %.60q..., want URL-encoded PEM", src.GetCertificate())
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err != nil || c.Subject.CommonName != "fraise-dev-client" {
			t.Errorf("got certificate for %v (%v), want the client's", c.Subject, err)
		}
		// include_tls_session is off: extauthz is not shown the SNI.
		if ts := cr.GetAttributes().GetTlsSession(); ts != nil {
			t.Errorf("got TLS session %v, want none", ts)
		}
	})
	t.Run("HTTP/1.1 from loopback: internal", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		r := s.do(t, s.h1, id, http.MethodPost, "/graphql?x=1", query, [2]string{"x-request-id", "loopback-chosen"})
		if r.Status != 200 || r.Proto != "HTTP/1.1" {
			t.Fatalf("got %s %d %s, want 200 over HTTP/1.1", r.Proto, r.Status, r.Body)
		}
		hr := s.authz.requests(id)[0].GetAttributes().GetRequest().GetHttp()
		if hr.GetProtocol() != "HTTP/1.1" || hr.GetPath() != "/graphql?x=1" {
			t.Errorf("got protocol %q path %q, want HTTP/1.1 /graphql?x=1", hr.GetProtocol(), hr.GetPath())
		}
		hs := hr.GetHeaders()
		if hs["x-request-id"] != "loopback-chosen" || hs["x-envoy-internal"] != "true" || hs["x-envoy-external-address"] != "" {
			t.Errorf("internal request: got x-request-id %q, x-envoy-internal %q, x-envoy-external-address %q",
				hs["x-request-id"], hs["x-envoy-internal"], hs["x-envoy-external-address"])
		}
		if got := s.core.requests(id)[0].URI; got != "/graphql?x=1" {
			t.Errorf("core got %s, want /graphql?x=1", got)
		}
	})
}

func denyWith(status typev3.StatusCode, body string) authzScript {
	return func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &grpcstatuspb.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: status},
				Headers: []*corev3.HeaderValueOption{
					hv("x-why", "policy", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					hv("www-authenticate", `Bearer error="invalid_token"`, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					hv("content-type", "application/json", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				},
				Body: body,
			}},
		}, nil
	}
}

func denialBody(code string) string {
	return `{"errors":[{"message":"denied by policy","extensions":{"code":"` + code + `"}}]}`
}

func testExtAuthzAnswers(t *testing.T, s *stack) {
	type want struct {
		status   int
		code     string // the body's extensions.code
		body     string // exactly, when set
		headers  map[string]string
		upstream bool
		grpc     codes.Code
		grpcMsg  string // contained in grpc-message
	}
	unavailable := want{status: 503, code: "UNAVAILABLE", body: envoy.UnavailableBody,
		headers: map[string]string{"retry-after": envoy.UnavailableRetryAfter, "content-type": "application/json"}, grpc: codes.Unavailable}
	for _, tt := range []struct {
		name   string
		script authzScript
		want   want
	}{
		{"allow with headers", func(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			resp, _ := allowAs(r.GetAttributes().GetRequest().GetHttp().GetHeaders()[caseHeader])(ctx, r)
			resp.GetOkResponse().ResponseHeadersToAdd = []*corev3.HeaderValueOption{
				hv("x-decision", "d-1", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			}
			return resp, nil
		}, want{status: 200, headers: map[string]string{"x-decision": "d-1", "x-core-echo": "1"}, upstream: true, grpc: codes.OK}},
		{"deny 403", denyWith(typev3.StatusCode_Forbidden, denialBody("FORBIDDEN")), want{
			status: 403, code: "FORBIDDEN", body: denialBody("FORBIDDEN"),
			headers: map[string]string{"x-why": "policy", "content-type": "application/json"}, grpc: codes.PermissionDenied, grpcMsg: "denied by policy",
		}},
		{"deny 401", denyWith(typev3.StatusCode_Unauthorized, denialBody("UNAUTHENTICATED")), want{
			status: 401, code: "UNAUTHENTICATED", body: denialBody("UNAUTHENTICATED"),
			headers: map[string]string{"www-authenticate": `Bearer error="invalid_token"`}, grpc: codes.Unauthenticated, grpcMsg: "denied by policy",
		}},
		{"deny 400 keeps extauthz's body", denyWith(typev3.StatusCode_BadRequest, denialBody("BAD_REQUEST")), want{
			status: 400, code: "BAD_REQUEST", body: denialBody("BAD_REQUEST"), grpc: codes.Internal,
		}},
		// 413 and 429 are statuses the ingress maps for its own replies:
		// extauthz's keep extauthz's body.
		{"deny 413 keeps extauthz's body", denyWith(typev3.StatusCode_PayloadTooLarge, denialBody("QUOTA_EXCEEDED")), want{
			status: 413, code: "QUOTA_EXCEEDED", body: denialBody("QUOTA_EXCEEDED"), grpc: codes.Unknown,
		}},
		{"deny 429 keeps extauthz's body", denyWith(typev3.StatusCode_TooManyRequests, denialBody("RATE_LIMITED")), want{
			status: 429, code: "RATE_LIMITED", body: denialBody("RATE_LIMITED"), grpc: codes.Unavailable,
		}},
		// A 503 denial cannot be told from a failed check (both UAEX,
		// 503): it is answered as one. extauthz reports its own failures
		// as gRPC errors; a policy should not deny with 503.
		{"deny 503 is taken for a failed check", denyWith(typev3.StatusCode_ServiceUnavailable, denialBody("UNAVAILABLE")), unavailable},
		{"gRPC error: fail closed", func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, grpcstatus.Error(codes.Unavailable, "policy engine down")
		}, unavailable},
		{"error_response: fail closed", func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{
				Status:       &grpcstatuspb.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "policy engine down"}},
			}, nil
		}, unavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			s.scriptAuthz(id, tt.script)
			r := s.post(t, s.h2, id, query)
			if r.Status != tt.want.status {
				t.Fatalf("got %d %v %s, want %d", r.Status, r.Header, r.Body, tt.want.status)
			}
			if tt.want.code != "" {
				if got := errorCode(r.Body); got != tt.want.code {
					t.Errorf("got body %s (code %s), want code %s", r.Body, got, tt.want.code)
				}
			}
			if tt.want.body != "" && r.Body != tt.want.body {
				t.Errorf("got body %q, want %q", r.Body, tt.want.body)
			}
			for k, v := range tt.want.headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("got %s %q, want %q", k, got, v)
				}
			}
			if got := len(s.core.requests(id)) > 0; got != tt.want.upstream {
				t.Errorf("core reached: %v, want %v", got, tt.want.upstream)
			}
			if !tt.want.upstream && len(s.rls.requests(id)) > 0 {
				t.Error("a refused request was counted by the rate limiter")
			}
			_, _, err := s.doGet(t, id, "rows")
			st := grpcstatus.Convert(err)
			if st.Code() != tt.want.grpc || !strings.Contains(st.Message(), tt.want.grpcMsg) {
				t.Errorf("gRPC: got %v %q, want %v containing %q", st.Code(), st.Message(), tt.want.grpc, tt.want.grpcMsg)
			}
			if got := len(s.flight.callsOf(id)) > 0; got != tt.want.upstream {
				t.Errorf("Flight upstream reached: %v, want %v", got, tt.want.upstream)
			}
		})
	}
}

// grpcFrame is a gRPC length-prefixed message: what Envoy buffers of a
// unary call's request.
func grpcFrame(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// testBodyToExtAuthz: the GraphQL request's body is shown to extauthz
// whole, as the bytes sent; the Flight calls naming a dataset show their
// descriptor, cut at 64 KiB; other Flight calls and everything else show
// none.
func testBodyToExtAuthz(t *testing.T, s *stack) {
	desc := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"sales", "orders"}}
	big := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"sales", strings.Repeat("x", envoy.FlightDescriptorMaxBytes+100)}}
	type sent struct {
		body, rawBody []byte
		partial       string
		size          int64
	}
	for _, tt := range []struct {
		name   string
		call   func(t *testing.T, id string)
		want   func(t *testing.T) sent
		check  func(t *testing.T, got sent)
		reason string
	}{
		{name: "GraphQL POST: whole, as bytes", call: func(t *testing.T, id string) {
			if r := s.post(t, s.h2, id, query); r.Status != 200 {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		}, want: func(*testing.T) sent { return sent{rawBody: []byte(query), partial: "false", size: int64(len(query))} }},
		{name: "GraphQL POST, not UTF-8: the bytes sent", call: func(t *testing.T, id string) {
			if r := s.post(t, s.h2, id, "{\"query\":\"{ a(s: \\\"\xff\xfe\\\") }\"}"); r.Status != 200 {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		}, want: func(*testing.T) sent {
			b := "{\"query\":\"{ a(s: \\\"\xff\xfe\\\") }\"}"
			return sent{rawBody: []byte(b), partial: "false", size: int64(len(b))}
		}},
		{name: "GraphQL GET: no body", call: func(t *testing.T, id string) {
			if r := s.do(t, s.h2, id, http.MethodGet, "/graphql?query=%7Ba%7D", ""); r.Status != 200 {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		}, want: func(*testing.T) sent { return sent{} }},
		{name: "GetFlightInfo: descriptor as bytes", call: func(t *testing.T, id string) {
			ctx, c := s.flightCtx(t, id)
			if _, err := c.GetFlightInfo(ctx, desc); err != nil {
				t.Fatal(err)
			}
		}, want: func(t *testing.T) sent {
			f := grpcFrame(t, desc)
			return sent{rawBody: f, partial: "false", size: int64(len(f))}
		}},
		{name: "GetSchema: descriptor as bytes", call: func(t *testing.T, id string) {
			ctx, c := s.flightCtx(t, id)
			if _, err := c.GetSchema(ctx, desc); err != nil {
				t.Fatal(err)
			}
		}, want: func(t *testing.T) sent {
			f := grpcFrame(t, desc)
			return sent{rawBody: f, partial: "false", size: int64(len(f))}
		}},
		{name: "PollFlightInfo: descriptor as bytes", call: func(t *testing.T, id string) {
			ctx, c := s.flightCtx(t, id)
			if _, err := c.PollFlightInfo(ctx, desc); err != nil {
				t.Fatal(err)
			}
		}, want: func(t *testing.T) sent {
			f := grpcFrame(t, desc)
			return sent{rawBody: f, partial: "false", size: int64(len(f))}
		}},
		{name: "GetFlightInfo past 64 KiB: partial", call: func(t *testing.T, id string) {
			ctx, c := s.flightCtx(t, id)
			if _, err := c.GetFlightInfo(ctx, big); err != nil {
				t.Fatal(err)
			}
		}, want: func(t *testing.T) sent {
			// The first 64 KiB. Envoy's partial-body header says "false"
			// when the buffer holds exactly the limit, so the frame's own
			// length is what shows the message is cut (extauthz reads it).
			return sent{rawBody: grpcFrame(t, big)[:envoy.FlightDescriptorMaxBytes], partial: "*", size: envoy.FlightDescriptorMaxBytes}
		}},
		{name: "DoGet: none", call: func(t *testing.T, id string) {
			if _, _, err := s.doGet(t, id, "rows"); err != nil {
				t.Fatal(err)
			}
		}, want: func(*testing.T) sent { return sent{} }},
		{name: "DoPut far over MaxRequestBytes: none, not limited", call: func(t *testing.T, id string) {
			ctx, c := s.flightCtx(t, id)
			st, err := c.DoPut(ctx)
			if err != nil {
				t.Fatal(err)
			}
			chunk := make([]byte, s.opts.MaxRequestBytes)
			for range 10 {
				if err := st.Send(&flight.FlightData{DataBody: chunk}); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
			r, err := st.Recv()
			if err != nil || string(r.GetAppMetadata()) != fmt.Sprint(10*len(chunk)) {
				t.Fatalf("got %v, %v, want the %d bytes sent received", r, err, 10*len(chunk))
			}
		}, want: func(*testing.T) sent { return sent{} }},
		{name: "DoAction: none", call: func(t *testing.T, id string) {
			ctx, c := s.flightCtx(t, id)
			st, err := c.DoAction(ctx, &flight.Action{Type: "refresh", Body: []byte("secret")})
			if err != nil {
				t.Fatal(err)
			}
			if r, err := st.Recv(); err != nil || string(r.GetBody()) != "done:refresh" {
				t.Fatalf("got %v, %v", r, err)
			}
		}, want: func(*testing.T) sent { return sent{} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			tt.call(t, id)
			checks := s.authz.requests(id)
			if len(checks) != 1 {
				t.Fatalf("extauthz asked %d times, want once", len(checks))
			}
			hr := checks[0].GetAttributes().GetRequest().GetHttp()
			got := sent{body: []byte(hr.GetBody()), rawBody: hr.GetRawBody(), partial: hr.GetHeaders()["x-envoy-auth-partial-body"], size: hr.GetSize()}
			w := tt.want(t)
			if string(got.body) != string(w.body) || string(got.rawBody) != string(w.rawBody) || w.partial != "*" && got.partial != w.partial {
				t.Errorf("extauthz got body %.80q raw %d bytes (partial %q), want body %.80q raw %d bytes (partial %q)",
					got.body, len(got.rawBody), got.partial, w.body, len(w.rawBody), w.partial)
			}
			if w.size != 0 && got.size != w.size {
				t.Errorf("got size %d, want %d", got.size, w.size)
			}
			if strings.HasPrefix(hr.GetPath(), envoy.FlightPrefix+"Get") || strings.HasPrefix(hr.GetPath(), envoy.FlightPrefix+"Poll") {
				// What extauthz's own parser reads of it: the dataset, or
				// nothing of a cut message.
				want := "sales.orders"
				if w.partial == "*" {
					want = ""
				}
				f, ok := operation.ParseFlight(hr.GetPath(), got.rawBody)
				if !ok || f.Dataset != want {
					t.Errorf("extauthz's parser read %+v, %v, want dataset %q", f, ok, want)
				}
			}
			if calls := s.flight.callsOf(id); len(calls) == 1 && calls[0].Descriptor != nil && !proto.Equal(calls[0].Descriptor, desc) && !proto.Equal(calls[0].Descriptor, big) {
				t.Errorf("Flight upstream got descriptor %v", calls[0].Descriptor)
			}
		})
	}
	// MaxRequestBytes holds however the body arrives: in one read or
	// many, with or without a content length. A body extauthz could only
	// be shown part of never reaches the core.
	limit := int(s.opts.MaxRequestBytes)
	body := func(n int) string { return `{"query":"` + strings.Repeat("x", n-len(`{"query":""}`)) + `"}` }
	for _, tt := range []struct {
		name   string
		send   func(t *testing.T, id string) reply
		status int
	}{
		{"HTTP/2, at the limit", func(t *testing.T, id string) reply { return s.post(t, s.h2, id, body(limit)) }, 200},
		{"HTTP/2, one byte over", func(t *testing.T, id string) reply { return s.post(t, s.h2, id, body(limit+1)) }, 413},
		{"HTTP/1.1, one byte over", func(t *testing.T, id string) reply {
			return s.raw(t, s.rawRequest(id, "POST", "/graphql", body(limit+1)))
		}, 413},
		{"HTTP/1.1 chunked, one byte over", func(t *testing.T, id string) reply {
			b := body(limit + 1)
			return s.raw(t, strings.Replace(s.rawRequest(id, "POST", "/graphql", ""), "Connection: close\r\n",
				fmt.Sprintf("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n", len(b), b), 1))
		}, 413},
		{"HTTP/2 without a length, one byte over", func(t *testing.T, id string) reply {
			req, err := http.NewRequest(http.MethodPost, "https://"+s.envoy.Addr+"/graphql", io.NopCloser(strings.NewReader(body(limit+1))))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(caseHeader, id)
			resp, err := s.h2.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if req.ContentLength != 0 {
				t.Fatalf("request has length %d, want none sent", req.ContentLength)
			}
			return reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
		}, 413},
		{"HTTP/2, many frames over", func(t *testing.T, id string) reply { return s.post(t, s.h2, id, body(100*limit)) }, 413},
	} {
		t.Run("GraphQL body "+tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			r := tt.send(t, id)
			if r.Status != tt.status {
				t.Fatalf("got %d %.100q, want %d", r.Status, r.Body, tt.status)
			}
			if tt.status == 200 {
				return
			}
			if r.Body != envoy.TooLargeBody || r.Header.Get("content-type") != "application/json" {
				t.Errorf("got %q (%s), want the TOO_LARGE JSON", r.Body, r.Header.Get("content-type"))
			}
			if n := len(s.core.requests(id)); n != 0 {
				t.Errorf("the core got the body over the limit (%d requests)", n)
			}
			for _, c := range s.authz.requests(id) {
				t.Errorf("extauthz was shown %d bytes of a body over the limit (partial %q)", len(c.GetAttributes().GetRequest().GetHttp().GetRawBody()),
					c.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-envoy-auth-partial-body"])
			}
		})
	}
}

func descriptors(r *rlsv3.RateLimitRequest) [][]string {
	var got [][]string
	for _, d := range r.GetDescriptors() {
		var es []string
		for _, e := range d.GetEntries() {
			es = append(es, e.GetKey()+"="+e.GetValue())
		}
		got = append(got, es)
	}
	return got
}

func testRateLimit(t *testing.T, s *stack) {
	t.Run("descriptors and headers", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		r := s.post(t, s.h2, id, query)
		if r.Status != 200 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		reqs := s.rls.requests(id)
		if len(reqs) != 1 {
			t.Fatalf("rate limiter asked %d times, want once", len(reqs))
		}
		want := [][]string{
			{"tier=gold", "tenant=" + id},
			{"tier=gold", "tenant=" + id, "op=read"},
			{"tier=gold", "subject=alice"},
		}
		if got := descriptors(reqs[0]); fmt.Sprint(got) != fmt.Sprint(want) || reqs[0].GetDomain() != "fraise" {
			t.Errorf("got domain %q descriptors %v, want fraise %v", reqs[0].GetDomain(), got, want)
		}
		for k, v := range map[string]string{
			"X-RateLimit-Limit": "5, 5;w=60", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "7", "RateLimit-Remaining": "4",
		} {
			if got := r.Header.Get(k); got != v {
				t.Errorf("got %s %q, want %q", k, got, v)
			}
		}
	})
	t.Run("descriptor with an absent header is not sent", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		s.scriptAuthz(id, allowWith([][2]string{{envoy.TenantHeader, id}, {envoy.TierHeader, "free"}}))
		if r := s.post(t, s.h2, id, query); r.Status != 200 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		reqs := s.rls.requests(id)
		if len(reqs) != 1 {
			t.Fatalf("rate limiter asked %d times, want once", len(reqs))
		}
		if got, want := descriptors(reqs[0]), [][]string{{"tier=free", "tenant=" + id}}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got descriptors %v, want %v", got, want)
		}
	})
	for _, tt := range []struct {
		name     string
		script   rlsScript
		status   int
		body     string
		headers  map[string]string
		grpc     codes.Code
		upstream bool
	}{
		{"over the limit", limited(true), 429, envoy.RateLimitedBody, map[string]string{
			"retry-after": "7", "x-ratelimit-remaining": "0", "x-ratelimit-limit": "5, 5;w=60", "content-type": "application/json",
		}, codes.ResourceExhausted, false},
		{"limiter errs: fail open", func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
			return nil, grpcstatus.Error(codes.Unavailable, "redis down")
		}, 200, "", nil, codes.OK, true},
		{"limiter answers UNKNOWN: fail open", func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
			return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_UNKNOWN}, nil
		}, 200, "", nil, codes.OK, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			s.scriptRLS(id, tt.script)
			r := s.post(t, s.h2, id, query)
			if r.Status != tt.status || tt.body != "" && r.Body != tt.body {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, tt.status, tt.body)
			}
			for k, v := range tt.headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("got %s %q, want %q", k, got, v)
				}
			}
			if got := len(s.core.requests(id)) > 0; got != tt.upstream {
				t.Errorf("core reached: %v, want %v", got, tt.upstream)
			}
			_, _, err := s.doGet(t, id, "rows")
			if got := grpcstatus.Code(err); got != tt.grpc {
				t.Errorf("gRPC: got %v, want %v", err, tt.grpc)
			}
		})
	}
}

func testLocalReplies(t *testing.T, s *stack) {
	for _, tt := range []struct {
		name    string
		send    func(t *testing.T, id string) reply
		status  int
		code    string
		headers map[string]string
	}{
		{"no such route", func(t *testing.T, id string) reply {
			return s.do(t, s.h2, id, http.MethodGet, "/nowhere", "")
		}, 404, "NOT_FOUND", nil},
		{"no such route over HTTP/1.1", func(t *testing.T, id string) reply {
			return s.do(t, s.h1, id, http.MethodGet, "/nowhere", "")
		}, 404, "NOT_FOUND", nil},
		{"body too large", func(t *testing.T, id string) reply {
			return s.post(t, s.h1, id, `{"query":"`+strings.Repeat("y", 2*int(s.opts.MaxRequestBytes))+`"}`)
		}, 413, "TOO_LARGE", nil},
		{"rate limited", func(t *testing.T, id string) reply {
			s.scriptRLS(id, limited(true))
			return s.post(t, s.h1, id, query)
		}, 429, "RATE_LIMITED", map[string]string{"retry-after": "7"}},
		{"extauthz failed", func(t *testing.T, id string) reply {
			s.scriptAuthz(id, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, grpcstatus.Error(codes.Internal, "boom")
			})
			return s.post(t, s.h1, id, query)
		}, 503, "UNAVAILABLE", map[string]string{"retry-after": envoy.UnavailableRetryAfter}},
		{"escaped slash", func(t *testing.T, id string) reply {
			return s.raw(t, s.rawRequest(id, "GET", "/graphql%2F..%2Fadmin", ""))
		}, 400, "BAD_REQUEST", nil},
		{"HTTP/1.0", func(t *testing.T, id string) reply {
			return s.raw(t, strings.Replace(s.rawRequest(id, "POST", "/graphql", query), "HTTP/1.1", "HTTP/1.0", 1))
		}, 426, "BAD_REQUEST", nil},
		{"headers over 60 KiB", func(t *testing.T, id string) reply {
			return s.raw(t, s.rawRequest(id, "POST", "/graphql", query, "x-big: "+strings.Repeat("b", envoy.MaxRequestHeadersKB<<10)))
		}, 431, "TOO_LARGE", nil},
		{"too many headers", func(t *testing.T, id string) reply {
			var hs []string
			for i := range envoy.MaxHeadersCount + 1 {
				hs = append(hs, fmt.Sprintf("x-h-%d: v", i))
			}
			return s.raw(t, s.rawRequest(id, "POST", "/graphql", query, hs...))
		}, 431, "TOO_LARGE", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			r := tt.send(t, id)
			if r.Status != tt.status {
				t.Fatalf("got %d %v %q, want %d", r.Status, r.Header, r.Body, tt.status)
			}
			if got := errorCode(r.Body); got != tt.code {
				t.Errorf("got body %q (code %s), want code %s", r.Body, got, tt.code)
			}
			if ct := r.Header.Get("content-type"); ct != "application/json" {
				t.Errorf("got content-type %q, want application/json", ct)
			}
			for k, v := range tt.headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("got %s %q, want %q", k, got, v)
				}
			}
			if len(s.core.requests(id)) > 0 {
				t.Error("the core was reached")
			}
		})
	}
	t.Run("the core's own 503 passes unchanged", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		r := s.post(t, s.h2, id, query, [2]string{"x-test-core", "unavailable"})
		if r.Status != 503 || r.Body != coreBusyBody || r.Header.Get("retry-after") != "5" {
			t.Fatalf("got %d %q retry-after %q, want the core's 503 unchanged", r.Status, r.Body, r.Header.Get("retry-after"))
		}
	})
	t.Run("gRPC local reply", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		s.scriptAuthz(id, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, grpcstatus.Error(codes.Internal, "boom")
		})
		_, _, err := s.doGet(t, id, "rows")
		st := grpcstatus.Convert(err)
		if st.Code() != codes.Unavailable || errorCode(st.Message()) != "UNAVAILABLE" {
			t.Fatalf("got %v %q, want UNAVAILABLE carrying the UNAVAILABLE JSON", st.Code(), st.Message())
		}
	})
}

func testPaths(t *testing.T, s *stack) {
	for _, tt := range []struct {
		name, target string
		status       int
		coreURI      string // what the core received, "" when not reached
		authz        bool
	}{
		{"exact", "/graphql", 200, "/graphql", true},
		{"query kept", "/graphql?a=1&b=%2F", 200, "/graphql?a=1&b=%2F", true},
		{"dot segments resolved", "/x/../graphql", 200, "/graphql", true},
		{"dot segment", "/./graphql", 200, "/graphql", true},
		{"above the root", "/../../graphql", 200, "/graphql", true},
		{"merged slashes", "//graphql", 200, "/graphql", true},
		{"encoded dots", "/x/%2e%2e/graphql", 200, "/graphql", true},
		{"escaped slash", "/graphql%2F..%2Freadyz", 400, "", false},
		{"escaped slash, lower case", "/x%2f../graphql", 400, "", false},
		{"escaped backslash", "/graphql%5Creadyz", 400, "", false},
		{"below graphql", "/graphql/readyz", 404, "", false},
		{"trailing slash", "/graphql/", 404, "", false},
		{"other case", "/GraphQL", 404, "", false},
		{"dot segments out of graphql", "/graphql/../readyz", 404, "", false},
		{"health", "/readyz", 404, "", false},
		{"metrics", "/metrics", 404, "", false},
		{"Flight path without gRPC", "/arrow.flight.protocol.FlightService/DoGet", 404, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			r := s.raw(t, s.rawRequest(id, "POST", tt.target, query))
			if r.Status != tt.status {
				t.Fatalf("got %d %s, want %d", r.Status, r.Body, tt.status)
			}
			var got string
			if reqs := s.core.requests(id); len(reqs) == 1 {
				got = reqs[0].URI
			}
			if got != tt.coreURI {
				t.Errorf("core got %q, want %q", got, tt.coreURI)
			}
			checks := s.authz.requests(id)
			if asked := len(checks) > 0; asked != tt.authz {
				t.Errorf("extauthz asked: %v, want %v", asked, tt.authz)
			}
			// extauthz decides on the path the core gets, normalised.
			if len(checks) == 1 && checks[0].GetAttributes().GetRequest().GetHttp().GetPath() != tt.coreURI {
				t.Errorf("extauthz was asked about %q, the core got %q", checks[0].GetAttributes().GetRequest().GetHttp().GetPath(), tt.coreURI)
			}
			if tt.status == 404 && r.Body != envoy.NotFoundBody || tt.status == 400 && r.Body != envoy.BadRequestBody {
				t.Errorf("got body %q, want the ingress's JSON for %d", r.Body, tt.status)
			}
		})
	}
}

func testStreaming(t *testing.T, s *stack) {
	for _, tt := range []struct {
		name  string
		c     *http.Client
		proto string
	}{{"HTTP/1.1", s.h1, "HTTP/1.1"}, {"HTTP/2", s.h2, "HTTP/2.0"}} {
		t.Run(tt.name+" response streams", func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			req, _ := http.NewRequest(http.MethodPost, "https://"+s.envoy.Addr+"/graphql", strings.NewReader(query))
			req.Header.Set(caseHeader, id)
			req.Header.Set("x-test-core", "stream")
			resp, err := tt.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Proto != tt.proto {
				t.Fatalf("got %s %d, want 200 over %s", resp.Proto, resp.StatusCode, tt.proto)
			}
			// Each chunk arrives before the core writes the next: Envoy
			// forwards as it receives, it does not buffer the response.
			rd := newLineReader(resp.Body)
			for i := range 3 {
				line, err := rd()
				if err != nil || line != fmt.Sprintf("part-%d", i) {
					t.Fatalf("chunk %d: got %q, %v", i, line, err)
				}
				if i < 2 {
					s.core.ack(id)
				}
			}
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Fatalf("after the last chunk: %q, %v", rest, err)
			}
		})
	}
	t.Run("gRPC server stream with trailers", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		got, tr, err := s.doGet(t, id, "rows")
		if err != nil || strings.Join(got, ",") != "row-0,row-1,row-2" || first(tr.Get("x-rows")) != "3" {
			t.Fatalf("got %v trailer %v err %v, want three rows and x-rows: 3", got, tr, err)
		}
		hr := s.authz.requests(id)[0].GetAttributes().GetRequest().GetHttp()
		if hr.GetProtocol() != "HTTP/2" {
			t.Errorf("got protocol %q, want HTTP/2", hr.GetProtocol())
		}
		if n := len(s.rls.requests(id)); n != 1 {
			t.Errorf("rate limiter asked %d times for the Flight call, want once", n)
		}
	})
	t.Run("gRPC stream is not buffered", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		ctx, c := s.flightCtx(t, id)
		st, err := c.DoGet(ctx, &flight.Ticket{Ticket: []byte("acked")})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			m, err := st.Recv()
			if err != nil || string(m.GetAppMetadata()) != fmt.Sprintf("row-%d", i) {
				t.Fatalf("message %d: got %v, %v", i, m, err)
			}
			if i < 2 {
				s.flight.ack(id)
			}
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("got %v, want the end of the stream", err)
		}
		if first(st.Trailer().Get("x-rows")) != "3" {
			t.Fatalf("got trailer %v, want x-rows: 3", st.Trailer())
		}
	})
	t.Run("gRPC trailers-only answers keep their status", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		for i := range 20 {
			_, _, err := s.doGet(t, id, "refuse")
			if st := grpcstatus.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "refused by the core" {
				t.Fatalf("call %d: got %v, want PERMISSION_DENIED from the core", i, err)
			}
		}
	})
	t.Run("gRPC header metadata", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		ctx, c := s.flightCtx(t, id)
		info, err := c.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"a"}})
		if err != nil || info.GetTotalRecords() != 3 {
			t.Fatalf("got %v, %v", info, err)
		}
	})
}

func newLineReader(r io.Reader) func() (string, error) {
	var buf []byte
	return func() (string, error) {
		for {
			if i := slices.Index(buf, '\n'); i >= 0 {
				line := string(buf[:i])
				buf = buf[i+1:]
				return line, nil
			}
			b := make([]byte, 256)
			n, err := r.Read(b)
			buf = append(buf, b[:n]...)
			if err != nil && n == 0 {
				return "", err
			}
		}
	}
}

func testAccessLog(t *testing.T, s *stack) {
	for _, tt := range []struct {
		name   string
		send   func(t *testing.T, id string) int
		tenant func(id string) string
		flags  string
	}{
		{"allowed", func(t *testing.T, id string) int { return s.post(t, s.h2, id, query).Status }, func(id string) string { return id }, "-"},
		{"denied", func(t *testing.T, id string) int {
			s.scriptAuthz(id, denyWith(typev3.StatusCode_Forbidden, denialBody("FORBIDDEN")))
			return s.post(t, s.h2, id, query).Status
		}, func(string) string { return "" }, envoy.FlagExtAuthz},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := s.newCase()
			status := tt.send(t, id)
			checks := s.authz.requests(id)
			if len(checks) != 1 {
				t.Fatalf("extauthz asked %d times", len(checks))
			}
			reqID := checks[0].GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]
			m := s.accessLog(t, reqID)
			want := map[string]string{
				"method": "POST", "path": "/graphql", "status": strconv.Itoa(status), "flags": tt.flags, "tenant": tt.tenant(id),
			}
			for k, v := range want {
				got := fmt.Sprint(m[k])
				if m[k] == nil {
					got = ""
				}
				if got != v {
					t.Errorf("access log %s = %q, want %q (line %v)", k, got, v, m)
				}
			}
			for _, k := range []string{"time", "duration"} {
				if m[k] == nil || m[k] == "" {
					t.Errorf("access log has no %s: %v", k, m)
				}
			}
		})
	}
}

func testAdmin(t *testing.T, s *stack) {
	ctx := context.Background()
	ready, err := s.envoy.Admin(ctx, "/ready")
	if err != nil || strings.TrimSpace(string(ready)) != "LIVE" {
		t.Fatalf("admin /ready: got %q, %v, want LIVE", ready, err)
	}
	prom, err := s.envoy.Admin(ctx, "/stats/prometheus")
	if err != nil || !strings.Contains(string(prom), `envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress"}`) {
		t.Fatalf("admin /stats/prometheus: got %.200q, %v, want the ingress's counters", prom, err)
	}
	for _, path := range []string{"/ready", "/stats/prometheus", "/stats", "/server_info", "/config_dump", "/quitquitquit", "/healthcheck/fail"} {
		t.Run(path, func(t *testing.T) {
			id := s.newCase()
			r := s.do(t, s.h2, id, http.MethodPost, path, "")
			if r.Status != 404 || r.Body != envoy.NotFoundBody {
				t.Fatalf("ingress %s: got %d %.100q, want the not-found JSON", path, r.Status, r.Body)
			}
			if len(s.authz.requests(id)) != 0 {
				t.Error("extauthz asked about an admin path")
			}
		})
	}
	if _, err := s.envoy.Admin(ctx, "/ready"); err != nil {
		t.Fatalf("admin /ready after the ingress was sent admin paths: %v", err)
	}
}

// TestIngressWithAServiceDown: each dependency unreachable in turn, on an
// Envoy of its own. extauthz fails closed, the rate limiter fails open
// unless RateLimitFailureModeDeny, and a core that cannot be reached is
// UNAVAILABLE, each as JSON with Retry-After (gRPC: UNAVAILABLE).
func TestIngressWithAServiceDown(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		mod      func(*envoy.Options)
		status   int
		grpc     codes.Code
		authz    bool // extauthz asked
		upstream bool
	}{
		{"extauthz unreachable: fail closed", func(o *envoy.Options) { o.AuthzAddr = deadAddr(t) }, 503, codes.Unavailable, false, false},
		{"rate limiter unreachable: fail open", func(o *envoy.Options) { o.RateLimitAddr = deadAddr(t) }, 200, codes.OK, true, true},
		{"rate limiter unreachable, failure_mode_deny: refused", func(o *envoy.Options) {
			o.RateLimitAddr = deadAddr(t)
			o.RateLimitFailureModeDeny = true
		}, 503, codes.Unavailable, true, false},
		{"core unreachable", func(o *envoy.Options) { o.CoreHTTPAddr, o.CoreFlightAddr = deadAddr(t), deadAddr(t) }, 503, codes.Unavailable, true, false},
		// Every TLS upstream's certificate names localhost: Envoy, told to
		// expect "core", refuses them all, extauthz first.
		{"upstream certificates not for UpstreamServerName", func(o *envoy.Options) { o.UpstreamServerName = "core" }, 503, codes.Unavailable, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, tt.mod)
			id := s.newCase()
			r := s.post(t, s.h2, id, query)
			if r.Status != tt.status {
				t.Fatalf("got %d %s, want %d", r.Status, r.Body, tt.status)
			}
			if tt.status == 503 && (r.Body != envoy.UnavailableBody || r.Header.Get("retry-after") != envoy.UnavailableRetryAfter ||
				r.Header.Get("content-type") != "application/json") {
				t.Errorf("got %q %v, want the UNAVAILABLE JSON with Retry-After", r.Body, r.Header)
			}
			if asked := len(s.authz.requests(id)) > 0; asked != tt.authz {
				t.Errorf("extauthz asked: %v, want %v", asked, tt.authz)
			}
			if got := len(s.core.requests(id)) > 0; got != tt.upstream {
				t.Errorf("core reached: %v, want %v", got, tt.upstream)
			}
			_, _, err := s.doGet(t, id, "rows")
			if got := grpcstatus.Code(err); got != tt.grpc {
				t.Errorf("gRPC: got %v, want %v", err, tt.grpc)
			}
			if got := len(s.flight.callsOf(id)) > 0; got != tt.upstream {
				t.Errorf("Flight upstream reached: %v, want %v", got, tt.upstream)
			}
		})
	}
}

// readUntilClosed reads conn until Envoy closes it or the deadline
// passes, and returns what it read and how the reading ended.
func readUntilClosed(conn net.Conn, within time.Duration) ([]byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(within))
	var got []byte
	b := make([]byte, 4096)
	for {
		n, err := conn.Read(b)
		got = append(got, b[:n]...)
		if err != nil {
			return got, err
		}
	}
}

// h2Frames returns the types of the HTTP/2 frames in b.
func h2Frames(b []byte) []byte {
	var types []byte
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		types = append(types, b[3])
		if len(b) < 9+n {
			break
		}
		b = b[9+n:]
	}
	return types
}

// TestIngressTimeouts runs an Envoy whose timeouts are short, so each can
// be seen to fire: the route timeout (504 TIMEOUT) on GraphQL and the
// unary Flight calls but not on streamed ones, the stream idle timeout on
// a stalled stream, the idle timeout on a connection without requests, the
// request headers timeout on a client that never finishes its headers,
// and the ext_authz timeout (fail closed).
func TestIngressTimeouts(t *testing.T) {
	t.Parallel()
	const (
		route      = time.Second
		streamIdle = 2 * time.Second
		idle       = time.Second
		headers    = time.Second
	)
	s := newStack(t, func(o *envoy.Options) {
		o.GraphQLTimeout, o.RouteTimeout, o.StreamIdleTimeout, o.IdleTimeout, o.RequestHeadersTimeout = route, route, streamIdle, idle, headers
		// Long enough for every check on a loaded machine, short enough to
		// wait out once (slow extauthz).
		o.AuthzTimeout = 2 * time.Second
	})
	t.Run("route timeout: 504 TIMEOUT", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		r := s.post(t, s.h2, id, query, [2]string{"x-test-core", "hang"})
		if r.Status != 504 || r.Body != envoy.TimeoutBody || r.Header.Get("content-type") != "application/json" || r.Header.Get("retry-after") != "" {
			t.Fatalf("got %d %q %v, want 504 with the TIMEOUT JSON", r.Status, r.Body, r.Header)
		}
		if n := len(s.core.requests(id)); n != 1 {
			t.Fatalf("core got %d requests, want 1", n)
		}
	})
	t.Run("unary Flight call past the route timeout", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		ctx, c := s.flightCtx(t, id)
		_, err := c.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"hang"}})
		st := grpcstatus.Convert(err)
		if st.Code() != codes.Unavailable || errorCode(st.Message()) != "TIMEOUT" {
			t.Fatalf("got %v %q, want UNAVAILABLE carrying the TIMEOUT JSON", st.Code(), st.Message())
		}
	})
	t.Run("streamed Flight call outlives the route timeout", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		start := time.Now()
		got, tr, err := s.doGet(t, id, "paced:250ms:8")
		if err != nil || len(got) != 8 || first(tr.Get("x-rows")) != "8" {
			t.Fatalf("got %v trailer %v err %v, want 8 rows and x-rows: 8", got, tr, err)
		}
		if d := time.Since(start); d < route {
			t.Fatalf("the stream took %v, not longer than the route timeout %v: the test shows nothing", d, route)
		}
	})
	t.Run("stalled Flight stream: stream idle timeout", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		start := time.Now()
		got, _, err := s.doGet(t, id, "stall")
		if err == nil || len(got) != 1 {
			t.Fatalf("got %v, %v, want one row then an error", got, err)
		}
		if d := time.Since(start); d < streamIdle {
			t.Fatalf("stream ended after %v (%v), before the stream idle timeout %v", d, err, streamIdle)
		}
	})
	t.Run("slow extauthz: fail closed", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		s.scriptAuthz(id, func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			<-ctx.Done() // Envoy gives up at AuthzTimeout and cancels the call
			return nil, ctx.Err()
		})
		r := s.post(t, s.h2, id, query)
		if r.Status != 503 || r.Body != envoy.UnavailableBody || r.Header.Get("retry-after") != envoy.UnavailableRetryAfter {
			t.Fatalf("got %d %q %v, want 503 UNAVAILABLE with Retry-After", r.Status, r.Body, r.Header)
		}
		if len(s.core.requests(id)) != 0 {
			t.Fatal("a request reached the core without a decision")
		}
	})
	t.Run("stalled request body: stream idle timeout", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		conn, err := tls.Dial("tcp", s.envoy.Addr, alpn(s.clientTLS, "http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /graphql HTTP/1.1\r\nHost: x\r\n%s: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\"", caseHeader, id)
		start := time.Now()
		got, _ := readUntilClosed(conn, 20*time.Second)
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
		if err != nil {
			t.Fatalf("got %q, want a response: %v", got, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 408 || errorCode(string(body)) != "TIMEOUT" || resp.Header.Get("content-type") != "application/json" {
			t.Fatalf("got %d %q (%s), want 408 with the TIMEOUT JSON", resp.StatusCode, body, resp.Header.Get("content-type"))
		}
		if d := time.Since(start); d < streamIdle {
			t.Fatalf("answered after %v, before the stream idle timeout %v", d, streamIdle)
		}
		if len(s.authz.requests(id))+len(s.core.requests(id)) != 0 {
			t.Fatal("an incomplete request reached extauthz or the core")
		}
	})
	t.Run("idle HTTP/1.1 connection closed", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		conn, err := tls.Dial("tcp", s.envoy.Addr, alpn(s.clientTLS, "http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		fmt.Fprintf(conn, "GET /graphql?query=%%7Ba%%7D HTTP/1.1\r\nHost: x\r\n%s: %s\r\n\r\n", caseHeader, id)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("got %v, want Envoy to close the idle connection", err)
		}
		if d := time.Since(start); d < idle/2 {
			t.Fatalf("closed after %v, well before the idle timeout %v", d, idle)
		}
	})
	t.Run("idle HTTP/2 connection: GOAWAY", func(t *testing.T) {
		t.Parallel()
		conn, err := tls.Dial("tcp", s.envoy.Addr, alpn(s.clientTLS, "h2"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The client preface and an empty SETTINGS frame, then nothing.
		if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
			t.Fatal(err)
		}
		got, err := readUntilClosed(conn, 20*time.Second)
		if err != io.EOF || !slices.Contains(h2Frames(got), 7) {
			t.Fatalf("got frames %v and %v, want a GOAWAY (7) and the connection closed", h2Frames(got), err)
		}
	})
	t.Run("headers never finished: request headers timeout", func(t *testing.T) {
		t.Parallel()
		conn, err := tls.Dial("tcp", s.envoy.Addr, alpn(s.clientTLS, "http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "POST /graphql HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got, err := readUntilClosed(conn, 20*time.Second)
		if err != io.EOF {
			t.Fatalf("got %q, %v, want the connection closed", got, err)
		}
		if d := time.Since(start); d < headers/2 {
			t.Fatalf("closed after %v, well before the request headers timeout %v", d, headers)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
		if err != nil {
			t.Fatalf("got %q, want a response: %v", got, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 408 || errorCode(string(body)) != "TIMEOUT" || resp.Header.Get("content-type") != "application/json" {
			t.Fatalf("got %d %q (%s), want 408 with the TIMEOUT JSON", resp.StatusCode, body, resp.Header.Get("content-type"))
		}
	})
}

// TestIngressOverXDS: the same resources served over ADS by an
// xds.Server (as `fraise xds` serves them) to Envoy on the xDS
// bootstrap behave as the static bootstrap's: the route configuration
// arrives by RDS over ADS, requests are checked, limited and routed.
func TestIngressOverXDS(t *testing.T) {
	t.Parallel()
	s := newXDSStack(t, nil)
	t.Run("GraphQL", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		r := s.post(t, s.h2, id, query, [2]string{"x-fraise-tenant", "forged"})
		if r.Status != 200 || r.Header.Get("x-ratelimit-remaining") != "4" {
			t.Fatalf("got %d %v %s, want 200 with the rate-limit headers", r.Status, r.Header, r.Body)
		}
		core := s.core.requests(id)
		if len(core) != 1 || core[0].Header.Get(envoy.TenantHeader) != id || core[0].Peer.SANs[0] != devcerts.GatewayName {
			t.Fatalf("core got %+v, want one request with the tenant extauthz set, over mTLS", core)
		}
	})
	t.Run("Flight stream", func(t *testing.T) {
		t.Parallel()
		got, tr, err := s.doGet(t, s.newCase(), "rows")
		if err != nil || len(got) != 3 || first(tr.Get("x-rows")) != "3" {
			t.Fatalf("got %v trailer %v err %v, want three rows and x-rows: 3", got, tr, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		r := s.do(t, s.h2, s.newCase(), http.MethodGet, "/readyz", "")
		if r.Status != 404 || r.Body != envoy.NotFoundBody || r.Header.Get("content-type") != "application/json" {
			t.Fatalf("got %d %q %v, want the not-found JSON", r.Status, r.Body, r.Header)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		t.Parallel()
		id := s.newCase()
		s.scriptRLS(id, limited(true))
		if r := s.post(t, s.h2, id, query); r.Status != 429 || r.Body != envoy.RateLimitedBody {
			t.Fatalf("got %d %q, want 429 RATE_LIMITED", r.Status, r.Body)
		}
	})
}

// TestIngressConnectionLimit: past MaxConnections open client
// connections, a new one is closed at once; once one closes, another is
// served.
func TestIngressConnectionLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(o *envoy.Options) { o.MaxConnections = 1 })
	get := func() error {
		conn, err := tls.Dial("tcp", s.envoy.Addr, alpn(s.clientTLS, "http/1.1"))
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			return fmt.Errorf("got %d", resp.StatusCode)
		}
		return nil
	}
	first, err := tls.Dial("tcp", s.envoy.Addr, alpn(s.clientTLS, "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := io.WriteString(first, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil || resp.StatusCode != 404 {
		t.Fatalf("first connection: got %v, %v, want served", resp, err)
	}
	if err := get(); err == nil {
		t.Fatal("a second connection was served while the first is open, want it closed")
	}
	first.Close()
	// Envoy counts the first connection out when it sees it close, an
	// event a client cannot wait on: try until it does.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for err := get(); err != nil; err = get() {
		select {
		case <-deadline:
			t.Fatalf("no connection served after the first closed: %v", err)
		case <-tick.C:
		}
	}
}
