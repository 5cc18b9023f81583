package extauthz_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/operation"
	"github.com/fraise-dev/fraise/extauthz/token"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/policies"
)

const (
	issuerName = "https://id.example.test/"
	audience   = "fraise"
	tenantA    = "0b7c2a40-6f1e-4d4b-9a57-3f0d6e3c8a11"
	requestID  = "8f0c7c3e-35b1-4f58-9d2c-5a4c1b7e2d90"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// syncBuffer collects the decision log from concurrent Checks.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the decision log lines as JSON objects.
func (b *syncBuffer) lines(tb testing.TB) []map[string]any {
	tb.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "authz decision" {
			out = append(out, m)
		}
	}
	return out
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fixture is a running extauthz on loopback gRPC, its issuer and the
// verifier the core would use.
type fixture struct {
	is       *tokentest.Issuer
	srv      *extauthz.Server
	client   authv3.AuthorizationClient
	conn     *grpc.ClientConn
	verifier *assertion.Verifier
	logs     *syncBuffer
}

func mustFixture(tb testing.TB, mods ...func(*extauthz.Options)) *fixture {
	tb.Helper()
	is := tokentest.NewIssuer(tb, issuerName, audience, now)
	signer, keys := assertiontest.New(tb, clock)
	logs := &syncBuffer{}
	o := extauthz.Options{
		Issuers: []extauthz.Issuer{is.Config()},
		Signer:  signer,
		Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
		Now:     clock,
	}
	for _, m := range mods {
		m(&o)
	}
	srv, err := extauthz.New(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	f := &fixture{is: is, srv: srv, logs: logs, verifier: assertion.NewVerifier(keys, clock)}
	f.conn, f.client = mustServe(tb, srv)
	return f
}

// mustServe serves srv on a loopback port and returns a client.
func mustServe(tb testing.TB, srv *extauthz.Server) (*grpc.ClientConn, authv3.AuthorizationClient) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn, authv3.NewAuthorizationClient(conn)
}

func (f *fixture) token(tb testing.TB, roles ...string) string {
	tb.Helper()
	return f.is.Sign(tb, f.is.Claims("alice", tenantA, roles...))
}

// fromTestdata loads a captured CheckRequest and sets its bearer token.
func fromTestdata(tb testing.TB, name, tok string) *authv3.CheckRequest {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	var req authv3.CheckRequest
	if err := protojson.Unmarshal(b, &req); err != nil {
		tb.Fatal(err)
	}
	h := req.GetAttributes().GetRequest().GetHttp()
	if tok == "" {
		delete(h.Headers, "authorization")
	} else {
		h.Headers["authorization"] = "Bearer " + tok
	}
	return &req
}

// graphqlRequest is a CheckRequest for a GraphQL POST as Envoy builds it.
func graphqlRequest(authz, query string) *authv3.CheckRequest {
	body, _ := json.Marshal(map[string]any{"query": query})
	return httpRequest(authz, "POST", "/graphql", string(body))
}

func httpRequest(authz, method, path, body string) *authv3.CheckRequest {
	headers := map[string]string{
		":method": method, ":path": path, "content-type": "application/json", "x-request-id": requestID,
	}
	if authz != "" {
		headers["authorization"] = authz
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Id:     "17", // Envoy's stream id: the request id is x-request-id
			Method: method, Path: path, Host: "localhost:8443", Headers: headers, Body: body, Protocol: "HTTP/2",
		},
	}}}
}

func mustCheck(tb testing.TB, c authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.CheckResponse {
	tb.Helper()
	resp, err := c.Check(context.Background(), req)
	if err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return resp
}

func headerMap(hs []*corev3.HeaderValueOption) map[string]string {
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}

// denial is what a client learns from a denied Check.
type denial struct {
	status  int
	code    codes.Code
	headers map[string]string
	body    string
}

func mustDenial(tb testing.TB, resp *authv3.CheckResponse) denial {
	tb.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		tb.Fatalf("got %v, want a denied response", resp)
	}
	return denial{
		status:  int(d.GetStatus().GetCode()),
		code:    codes.Code(resp.GetStatus().GetCode()),
		headers: headerMap(d.GetHeaders()),
		body:    d.GetBody(),
	}
}

const (
	generic401 = `{"errors":[{"message":"authentication required","extensions":{"code":"UNAUTHENTICATED"}}]}`
	generic403 = `{"errors":[{"message":"forbidden","extensions":{"code":"FORBIDDEN"}}]}`
)

func rsaPublicPEM(tb testing.TB, f *fixture) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(&f.is.RSA.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func claimsWith(claims map[string]any, kv ...any) map[string]any {
	out := maps.Clone(claims)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestCheckRefusals(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	good := f.is.Claims("alice", tenantA, "admin")
	valid := f.is.Sign(t, good)
	const q = "{ users { id } }"
	stranger := tokentest.NewIssuer(t, issuerName, audience, now)

	tests := []struct {
		name      string
		authz     string
		status    int
		code      codes.Code
		challenge string
		body      string
		reason    string // in the decision log
	}{
		{name: "no token", reason: "no authorization header", authz: "", status: 401, code: codes.Unauthenticated, challenge: "Bearer", body: generic401},
		{name: "not a Bearer scheme", reason: "not a Bearer token", authz: "Basic YWxpY2U6c2VjcmV0", status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "Bearer without a token", reason: "not a Bearer token", authz: "Bearer ", status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "malformed", reason: "parse", authz: "Bearer not.a.jwt", status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "alg none", reason: "parse", authz: "Bearer " + tokentest.Unsigned(t, map[string]any{"alg": "none", "typ": "JWT", "kid": f.is.ECKeyID}, good), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "HS256 keyed with the RSA public key", reason: "parse", authz: "Bearer " + tokentest.SignWith(t, jose.HS256, rsaPublicPEM(t, f), f.is.RSAKeyID, good), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "tampered payload", reason: "signature", authz: "Bearer " + tokentest.WithClaims(t, valid, claimsWith(good, "tenant", "11111111-1111-1111-1111-111111111111")), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "expired", reason: "token is expired (exp)", authz: "Bearer " + f.is.Sign(t, claimsWith(good, "exp", now.Add(-time.Hour).Unix())), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "not yet valid", reason: "token not valid yet (nbf)", authz: "Bearer " + f.is.Sign(t, claimsWith(good, "nbf", now.Add(time.Hour).Unix())), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "wrong issuer", reason: "untrusted issuer", authz: "Bearer " + f.is.Sign(t, claimsWith(good, "iss", "https://evil.example/")), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "wrong audience", reason: "invalid audience", authz: "Bearer " + f.is.Sign(t, claimsWith(good, "aud", "another-api")), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "unknown kid", reason: "unknown key id", authz: "Bearer " + tokentest.SignWith(t, jose.ES256, stranger.EC, "ec-unknown", good), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "oversized", reason: "exceeds", authz: "Bearer " + f.is.Sign(t, claimsWith(good, "pad", strings.Repeat("x", token.MaxBytes))), status: 401, code: codes.Unauthenticated, challenge: `Bearer error="invalid_token"`, body: generic401},
		{name: "no tenant", reason: "no tenant", authz: "Bearer " + f.is.Sign(t, claimsWith(good, "tenant", nil)), status: 403, code: codes.PermissionDenied, body: generic403},
		{name: "no known role", reason: "no known role", authz: "Bearer " + f.is.Sign(t, claimsWith(good, "roles", []string{"superuser"})), status: 403, code: codes.PermissionDenied, body: generic403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustDenial(t, mustCheck(t, f.client, graphqlRequest(tt.authz, q)))
			if d.status != tt.status || d.code != tt.code {
				t.Errorf("got status %d (gRPC %v), want %d (gRPC %v)", d.status, d.code, tt.status, tt.code)
			}
			if d.body != tt.body {
				t.Errorf("got body %s, want %s", d.body, tt.body)
			}
			if got := d.headers["www-authenticate"]; got != tt.challenge {
				t.Errorf("got WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if got := d.headers["content-type"]; got != "application/json" {
				t.Errorf("got content-type %q, want application/json", got)
			}
			lines := f.logs.lines(t)
			if r, _ := lines[len(lines)-1]["reason"].(string); !strings.Contains(r, tt.reason) {
				t.Errorf("got decision log reason %q, want it to say %q", r, tt.reason)
			}
		})
	}

	// Every refusal left a decision log line with its precise reason, and
	// no line carries a token.
	lines := f.logs.lines(t)
	if len(lines) != len(tests) {
		t.Fatalf("got %d decision log lines, want %d", len(lines), len(tests))
	}
	for i, l := range lines {
		if l["allow"] != false || l["reason"] == "" || l["decision_id"] == "" || l["request_id"] != requestID {
			t.Errorf("log line %d: got %v, want a denial with reason, decision and request ids", i, l)
		}
	}
	if strings.Contains(f.logs.String(), valid[:40]) {
		t.Errorf("the decision log contains a token")
	}
	for _, want := range []string{"expired", "untrusted issuer", "audience", "unknown key id", "exceeds", "signature"} {
		if !strings.Contains(f.logs.String(), want) {
			t.Errorf("got no decision log reason mentioning %q", want)
		}
	}
}

func TestCheckAllows(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	tok := f.is.Sign(t, claimsWith(f.is.Claims("alice", tenantA, "viewer", "analyst"), "scope", "read:User.email read:User", "tier", "gold"))
	req := fromTestdata(t, "check_graphql_query.json", tok)
	// Forged identity headers from the client change nothing: extauthz
	// overwrites them (and Envoy strips them before asking).
	req.Attributes.Request.Http.Headers["x-fraise-tenant"] = "11111111-1111-1111-1111-111111111111"
	resp := mustCheck(t, f.client, req)

	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK {
		t.Fatalf("got status %v, want OK (response %v)", got, resp)
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("got %v, want an OK response", resp)
	}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: got append action %v, want OVERWRITE_IF_EXISTS_OR_ADD", h.GetHeader().GetKey(), h.GetAppendAction())
		}
	}
	if !slices.Equal(ok.GetHeadersToRemove(), []string{"authorization", "cookie"}) {
		t.Errorf("got headers to remove %v, want [authorization cookie]", ok.GetHeadersToRemove())
	}
	h := headerMap(ok.GetHeaders())
	want := map[string]string{
		"x-fraise-tenant":  tenantA,
		"x-fraise-subject": "alice",
		"x-fraise-roles":   "viewer,analyst",
		"x-fraise-scopes":  "read:User.email read:User",
		"x-fraise-op":      "read",
		"x-fraise-tier":    "gold",
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s: got %q, want %q", k, h[k], v)
		}
	}
	a, err := f.verifier.Verify(h[assertion.Header], assertion.AudienceGraphQL)
	if err != nil {
		t.Fatalf("assertion: got error %v, want it to verify", err)
	}
	p, jti := a.Principal, a.ID
	hr := req.GetAttributes().GetRequest().GetHttp()
	if want := assertiontest.GraphQL(hr.GetMethod(), hr.GetPath(), []byte(hr.GetBody())); a.Binding != want {
		t.Errorf("assertion: got binding %+v, want the request's %+v", a.Binding, want)
	}
	if p.Tenant != tenantA || p.Subject != "alice" || !slices.Equal(p.Roles, []string{"viewer", "analyst"}) ||
		!slices.Equal(p.Scopes, []string{"read:User.email", "read:User"}) || p.Kind != core.KindJWT || p.Tier != "gold" {
		t.Errorf("assertion: got principal %+v, want alice of tenant A with roles viewer, analyst", p)
	}
	if jti != requestID {
		t.Errorf("assertion: got jti %q, want the request id %q", jti, requestID)
	}
	md := resp.GetDynamicMetadata().GetFields()
	if md["decision_id"].GetStringValue() == "" || md["policy_revision"].GetStringValue() != f.srv.PolicyRevision() {
		t.Errorf("got dynamic metadata %v, want decision_id and policy_revision", md)
	}

	lines := f.logs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("got %d decision log lines, want 1", len(lines))
	}
	l := lines[0]
	for k, v := range map[string]any{
		"allow": true, "subject": "alice", "tenant": tenantA, "operation": "query", "operation_name": "Users",
		"request_id": requestID, "policy_revision": f.srv.PolicyRevision(), "path": "/graphql",
	} {
		if l[k] != v {
			t.Errorf("decision log %s: got %v, want %v", k, l[k], v)
		}
	}
	if _, ok := l["latency"]; !ok {
		t.Errorf("decision log: got %v, want a latency", l)
	}
	if strings.Contains(f.logs.String(), tok[:40]) {
		t.Errorf("the decision log contains the token")
	}
}

func TestCheckRBAC(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	flightBody := func(dataset ...string) string {
		// A gRPC-framed FlightDescriptor of type PATH.
		var msg []byte
		msg = append(msg, 0x08, 0x01)
		for _, d := range dataset {
			msg = append(msg, 0x1a, byte(len(d)))
			msg = append(msg, d...)
		}
		return string(append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...))
	}
	tests := []struct {
		name   string
		roles  []string
		req    func(authz string) *authv3.CheckRequest
		status int // 0 for allowed
		op     string
	}{
		{name: "viewer may query", roles: []string{"viewer"}, req: func(a string) *authv3.CheckRequest { return graphqlRequest(a, "{ users { id } }") }, op: "read"},
		{name: "viewer may not mutate", roles: []string{"viewer"}, req: func(a string) *authv3.CheckRequest { return graphqlRequest(a, "mutation { createUser { id } }") }, status: 403},
		{name: "admin may mutate", roles: []string{"admin"}, req: func(a string) *authv3.CheckRequest { return graphqlRequest(a, "mutation { deleteRule(id: 1) { id } }") }, op: "write"},
		{name: "operator may update a rule", roles: []string{"operator"}, req: func(a string) *authv3.CheckRequest { return graphqlRequest(a, "mutation { updateRule(id: 1) { id } }") }, op: "write"},
		{name: "operator may not delete a rule", roles: []string{"operator"}, req: func(a string) *authv3.CheckRequest { return graphqlRequest(a, "mutation { deleteRule(id: 1) { id } }") }, status: 403},
		{name: "operator may not delete a rule through an alias", roles: []string{"operator"}, req: func(a string) *authv3.CheckRequest {
			return graphqlRequest(a, "mutation { update: deleteRule(id: 1) { id } }")
		}, status: 403},
		{name: "operator may not delete a rule through a fragment", roles: []string{"operator"}, req: func(a string) *authv3.CheckRequest {
			return graphqlRequest(a, "mutation { ...F } fragment F on Mutation { deleteRule(id: 1) { id } }")
		}, status: 403},
		{name: "operationName picks the operation the policy sees", roles: []string{"viewer"}, req: func(a string) *authv3.CheckRequest {
			body, _ := json.Marshal(map[string]any{"query": "query A { users { id } } mutation B { createUser { id } }", "operationName": "B"})
			return httpRequest(a, "POST", "/graphql", string(body))
		}, status: 403},
		{name: "GET query", roles: []string{"viewer"}, req: func(a string) *authv3.CheckRequest {
			return httpRequest(a, "GET", "/graphql?query="+url.QueryEscape("{ users { id } }"), "")
		}, op: "read"},
		{name: "viewer may not export with Flight", roles: []string{"viewer"}, req: func(a string) *authv3.CheckRequest {
			return httpRequest(a, "POST", operation.FlightServicePrefix+"DoGet", "")
		}, status: 403},
		{name: "analyst may export with Flight", roles: []string{"analyst"}, req: func(a string) *authv3.CheckRequest {
			return httpRequest(a, "POST", operation.FlightServicePrefix+"GetFlightInfo", flightBody("sales", "orders"))
		}, op: "flight"},
		{name: "analyst may not upload with Flight", roles: []string{"analyst"}, req: func(a string) *authv3.CheckRequest {
			return httpRequest(a, "POST", operation.FlightServicePrefix+"DoPut", "")
		}, status: 403},
		{name: "only admin sends other requests", roles: []string{"operator"}, req: func(a string) *authv3.CheckRequest {
			return httpRequest(a, "GET", "/metrics", "")
		}, status: 403},
		{name: "admin sends other requests", roles: []string{"admin"}, req: func(a string) *authv3.CheckRequest {
			return httpRequest(a, "DELETE", "/somewhere", "")
		}, op: "write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustCheck(t, f.client, tt.req("Bearer "+f.token(t, tt.roles...)))
			if tt.status != 0 {
				d := mustDenial(t, resp)
				if d.status != tt.status || d.code != codes.PermissionDenied || d.body != generic403 {
					t.Fatalf("got status %d (gRPC %v) body %s, want %d PERMISSION_DENIED with the generic body", d.status, d.code, d.body, tt.status)
				}
				return
			}
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatalf("got %v, want allowed", resp)
			}
			if got := headerMap(ok.GetHeaders())["x-fraise-op"]; got != tt.op {
				t.Errorf("got x-fraise-op %q, want %q", got, tt.op)
			}
		})
	}
}

func TestCheckUnreadableGraphQL(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	authz := "Bearer " + f.token(t, "admin")
	tests := []struct {
		name string
		req  *authv3.CheckRequest
		code string
	}{
		{name: "syntax error", req: graphqlRequest(authz, "{ users { id }"), code: "INVALID"},
		{name: "not JSON", req: httpRequest(authz, "POST", "/graphql", "query { users }"), code: "INVALID"},
		{name: "empty body", req: httpRequest(authz, "POST", "/graphql", ""), code: "INVALID"},
		{name: "two operations, no name", req: graphqlRequest(authz, "query A { a } query B { b }"), code: "INVALID"},
		{name: "persisted hash unknown", req: httpRequest(authz, "POST", "/graphql",
			`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"`+strings.Repeat("0", 64)+`"}}}`), code: "PERSISTED_QUERY_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustDenial(t, mustCheck(t, f.client, tt.req))
			if d.status != 400 || d.code != codes.InvalidArgument {
				t.Fatalf("got status %d (gRPC %v), want 400 INVALID_ARGUMENT", d.status, d.code)
			}
			var body struct {
				Errors []struct {
					Message    string            `json:"message"`
					Extensions map[string]string `json:"extensions"`
				} `json:"errors"`
			}
			if err := json.Unmarshal([]byte(d.body), &body); err != nil || len(body.Errors) != 1 {
				t.Fatalf("got body %q, want one GraphQL error", d.body)
			}
			if got := body.Errors[0].Extensions["code"]; got != tt.code || body.Errors[0].Message == "" {
				t.Errorf("got error %+v, want code %s and a message", body.Errors[0], tt.code)
			}
		})
	}

	t.Run("unauthenticated comes before unreadable", func(t *testing.T) {
		d := mustDenial(t, mustCheck(t, f.client, graphqlRequest("", "{ users {")))
		if d.status != 401 || d.body != generic401 {
			t.Fatalf("got status %d body %s, want the generic 401", d.status, d.body)
		}
	})
}

// persisted is an in-memory PersistedOperations keyed by tenant and hash.
type persisted map[string]string

func (p persisted) Lookup(_ context.Context, tenant, hash string) (string, bool, error) {
	doc, ok := p[tenant+"/"+hash]
	return doc, ok, nil
}

func TestCheckPersistedOperation(t *testing.T) {
	t.Parallel()
	doc := "mutation { createUser { id } }"
	sum := sha256.Sum256([]byte(doc))
	hash := hex.EncodeToString(sum[:])
	f := mustFixture(t, func(o *extauthz.Options) { o.Persisted = persisted{tenantA + "/" + hash: doc} })
	body := `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hash + `"}}}`

	// The policy decides on the stored document: a mutation.
	d := mustDenial(t, mustCheck(t, f.client, httpRequest("Bearer "+f.token(t, "viewer"), "POST", "/graphql", body)))
	if d.status != 403 {
		t.Fatalf("viewer: got status %d, want 403 for the persisted mutation", d.status)
	}
	resp := mustCheck(t, f.client, httpRequest("Bearer "+f.token(t, "operator"), "POST", "/graphql", body))
	if got := headerMap(resp.GetOkResponse().GetHeaders())["x-fraise-op"]; got != "write" {
		t.Fatalf("operator: got %v, want allowed with x-fraise-op write", resp)
	}
}

// rbacWith returns the embedded policy folder plus or minus files.
func rbacWith(tb testing.TB, files map[string]string) fstest.MapFS {
	tb.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		out[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	for name, content := range files {
		if content == "" {
			delete(out, name)
		} else {
			out[name] = &fstest.MapFile{Data: []byte(content)}
		}
	}
	return out
}

// viewersMayMutate is a roles.json change with a test that contradicts it.
const viewersMayMutate = `{"viewer": {"graphql": {"operations": ["query", "mutation"]}, "flight": {"methods": []}}}`

func TestReloadPolicy(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	ctx := context.Background()
	mutation := func() *authv3.CheckRequest {
		return graphqlRequest("Bearer "+f.token(t, "viewer"), "mutation { createUser { id } }")
	}
	before := f.srv.PolicyRevision()

	t.Run("a policy whose tests fail is not loaded", func(t *testing.T) {
		err := f.srv.ReloadPolicy(ctx, rbacWith(t, map[string]string{"data/roles.json": viewersMayMutate}))
		if err == nil || !strings.Contains(err.Error(), "test_viewer_may_not_mutate") {
			t.Fatalf("got error %v, want the failing test named", err)
		}
		if got := f.srv.PolicyRevision(); got != before {
			t.Fatalf("got revision %s, want the previous %s", got, before)
		}
		if d := mustDenial(t, mustCheck(t, f.client, mutation())); d.status != 403 {
			t.Fatalf("got status %d, want the previous policy's 403", d.status)
		}
	})

	t.Run("a policy that does not compile is not loaded", func(t *testing.T) {
		err := f.srv.ReloadPolicy(ctx, rbacWith(t, map[string]string{"extra.rego": "package fraise.extra\n\nx := y\n"}))
		if err == nil {
			t.Fatal("got no error, want a compile error")
		}
		if got := f.srv.PolicyRevision(); got != before {
			t.Fatalf("got revision %s, want the previous %s", got, before)
		}
	})

	t.Run("a policy that passes its tests replaces the old one", func(t *testing.T) {
		fsys := rbacWith(t, map[string]string{
			"data/roles.json": viewersMayMutate,
			"authz_test.rego": "package fraise.authz_test\n\nimport data.fraise.authz\n\ntest_viewer_may_mutate if authz.decision.allow with input as {\"principal\": {\"subject\": \"a\", \"tenant\": \"t\", \"roles\": [\"viewer\"]}, \"graphql\": {\"operation\": \"mutation\", \"name\": \"\", \"root_fields\": [\"createUser\"]}}\n",
		})
		if err := f.srv.ReloadPolicy(ctx, fsys); err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		if got := f.srv.PolicyRevision(); got == before {
			t.Fatalf("got revision %s, want a new one", got)
		}
		if resp := mustCheck(t, f.client, mutation()); resp.GetOkResponse() == nil {
			t.Fatalf("got %v, want the new policy to allow", resp)
		}
	})
}

func TestReloadPolicyConcurrentWithChecks(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	ctx := context.Background()
	tok := "Bearer " + f.token(t, "viewer")
	alt := rbacWith(t, map[string]string{"data/extra.json": `{"note": "changes the revision only"}`})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := f.client.Check(ctx, graphqlRequest(tok, "{ users { id } }"))
				if err != nil || resp.GetOkResponse() == nil {
					t.Errorf("got %v, %v, want every check allowed during reloads", resp, err)
					return
				}
			}
		})
	}
	for i := range 6 {
		fsys := fs.FS(policies.FS)
		if i%2 == 0 {
			fsys = alt
		}
		if err := f.srv.ReloadPolicy(ctx, fsys); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestPolicyFailuresFailClosed(t *testing.T) {
	t.Parallel()
	const test = "package fraise.authz_test\n\nimport data.fraise.authz\n\ntest_anonymous_denied if not authz.decision.allow with input as {\"request\": {}}\n"
	tests := []struct {
		name, rule string
	}{
		{name: "conflicting decisions", rule: "decision := {\"allow\": true} if input.principal\n\ndecision := {\"allow\": false, \"reason\": \"x\"} if input.principal\n\ndefault decision := {\"allow\": false}"},
		{name: "malformed decision", rule: "default decision := {\"allow\": false}\n\ndecision := {\"allowed\": true} if input.principal"},
		{name: "reserved header", rule: "default decision := {\"allow\": false}\n\ndecision := {\"allow\": true, \"headers\": {\"x-fraise-tenant\": \"other\"}} if input.principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"authz.rego":      {Data: []byte("package fraise.authz\n\n" + tt.rule + "\n")},
				"authz_test.rego": {Data: []byte(test)},
			}
			f := mustFixture(t, func(o *extauthz.Options) { o.PolicyFS = fsys })
			resp, err := f.client.Check(context.Background(), graphqlRequest("Bearer "+f.token(t, "admin"), "{ users { id } }"))
			if status.Code(err) != codes.Internal {
				t.Fatalf("got %v, %v, want a gRPC Internal error so Envoy fails closed", resp, err)
			}
			if strings.Contains(err.Error(), "conflict") || strings.Contains(err.Error(), "x-fraise") {
				t.Errorf("got error %q, want no policy detail in it", err)
			}
			if lines := f.logs.lines(t); len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["reason"] == "" {
				t.Errorf("got log %v, want one error line with the reason", lines)
			}
		})
	}
}

func TestPolicyDecisionStatusAndHeaders(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"authz.rego": {Data: []byte(`package fraise.authz

default decision := {"allow": false, "reason": "tier too low", "status": 429}

decision := {"allow": true, "reason": "ok", "headers": {"x-policy-note": concat(",", input.principal.roles)}} if {
	input.principal.tier == "gold"
}
`)},
		"authz_test.rego": {Data: []byte(`package fraise.authz_test

import data.fraise.authz

test_gold_allowed if authz.decision.allow with input as {"principal": {"tier": "gold", "roles": []}}
`)},
	}
	f := mustFixture(t, func(o *extauthz.Options) { o.PolicyFS = fsys })
	gold := f.is.Sign(t, claimsWith(f.is.Claims("alice", tenantA, "viewer"), "tier", "gold"))
	ok := mustCheck(t, f.client, graphqlRequest("Bearer "+gold, "{ a }")).GetOkResponse()
	if got := headerMap(ok.GetHeaders())["x-policy-note"]; got != "viewer" {
		t.Errorf("got x-policy-note %q, want the decision's header", got)
	}
	d := mustDenial(t, mustCheck(t, f.client, graphqlRequest("Bearer "+f.token(t, "viewer"), "{ a }")))
	if d.status != 429 || d.code != codes.ResourceExhausted || !strings.Contains(d.body, "RATE_LIMITED") || strings.Contains(d.body, "tier") {
		t.Errorf("got status %d (gRPC %v) body %s, want the decision's 429 with a generic body", d.status, d.code, d.body)
	}
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	f := mustFixture(t, func(o *extauthz.Options) { o.DryRun = true })
	resp := mustCheck(t, f.client, graphqlRequest("Bearer "+f.token(t, "viewer"), "mutation { createUser { id } }"))
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("got %v, want dry run to allow", resp)
	}
	if _, err := f.verifier.Verify(headerMap(ok.GetHeaders())[assertion.Header], assertion.AudienceGraphQL); err != nil {
		t.Errorf("got assertion error %v, want a valid assertion", err)
	}
	anon := mustCheck(t, f.client, graphqlRequest("", "{ a }")).GetOkResponse()
	if anon == nil || len(anon.GetHeaders()) != 0 {
		t.Errorf("got %v, want an unauthenticated dry-run request allowed without identity headers", anon)
	}
	lines := f.logs.lines(t)
	if len(lines) != 2 {
		t.Fatalf("got %d decision lines, want 2", len(lines))
	}
	for _, l := range lines {
		if l["allow"] != false || l["dry_run"] != true {
			t.Errorf("got %v, want the real decision (deny) logged with dry_run", l)
		}
	}
}

func TestHealthAndDrain(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	hc := healthpb.NewHealthClient(f.conn)
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("service %q: got %v, %v, want SERVING", svc, resp, err)
		}
	}
	f.srv.Drain()
	resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after Drain: got %v, %v, want NOT_SERVING", resp, err)
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	is := tokentest.NewIssuer(t, issuerName, audience, now)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := assertion.NewSigner(priv, "k", clock)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    extauthz.Options
		want string
	}{
		{name: "no signer", o: extauthz.Options{Issuers: []extauthz.Issuer{is.Config()}}, want: "Signer"},
		{name: "no issuers", o: extauthz.Options{Signer: signer}, want: "no issuers"},
		{name: "failing policy tests", o: extauthz.Options{Signer: signer, Issuers: []extauthz.Issuer{is.Config()},
			PolicyFS: rbacWith(t, map[string]string{"data/roles.json": viewersMayMutate})}, want: "policy tests failed"},
		{name: "policy without tests", o: extauthz.Options{Signer: signer, Issuers: []extauthz.Issuer{is.Config()},
			PolicyFS: rbacWith(t, map[string]string{"authz_test.rego": ""})}, want: "no tests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := extauthz.New(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestCheckWithoutHTTPAttributes(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	_, err := f.client.Check(context.Background(), &authv3.CheckRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
}

func TestCheckRawHeaderMap(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	req := graphqlRequest("", "{ users { id } }")
	h := req.Attributes.Request.Http
	h.Headers = nil
	h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "content-type", RawValue: []byte("application/json")},
		{Key: "Authorization", RawValue: []byte("Bearer " + f.token(t, "viewer"))},
	}}
	if resp := mustCheck(t, f.client, req); resp.GetOkResponse() == nil {
		t.Fatalf("got %v, want the token read from the raw header map", resp)
	}
	h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + f.token(t, "admin"))})
	if d := mustDenial(t, mustCheck(t, f.client, req)); d.status != 401 {
		t.Fatalf("got status %d, want two Authorization headers refused with 401", d.status)
	}
}

// TestCheckIdentityProviderDown: a token whose key extauthz does not hold,
// while the issuer's key set cannot be fetched, gets no verdict: the check
// fails (UNAVAILABLE: the gateway answers 503 with Retry-After), rather
// than a 401 that tells the client its credential is bad and to drop it.
func TestCheckIdentityProviderDown(t *testing.T) {
	t.Parallel()
	p := tokentest.NewProvider(t, audience)
	tok := p.Sign(t, now, map[string]any{"sub": "alice", "tenant": tenantA, "roles": []string{"admin"}})
	p.Server.Close()
	f := mustFixture(t, func(o *extauthz.Options) { o.Issuers = []extauthz.Issuer{p.Config()} })
	_, err := f.client.Check(context.Background(), graphqlRequest("Bearer "+tok, "query { users { id } }"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	if !strings.Contains(f.logs.String(), "key set unavailable") {
		t.Errorf("the decision log does not say why: %s", f.logs.String())
	}
}
