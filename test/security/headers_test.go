package security_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/test/stack"
)

// The identity headers extauthz sets and Envoy strips from every client
// request, with the values an attacker would like: Globex's admin, with
// every scope.
var forgedIdentity = [][2]string{
	{"x-fraise-tenant", globex},
	{"x-fraise-subject", "carol"},
	{"x-fraise-roles", "admin"},
	{"x-fraise-scopes", "read:User.email read:Post.internalNote"},
	{"x-fraise-tier", "enterprise"},
	{"x-fraise-op", "read"},
}

var headerAttacks = []attack{
	{
		name: "forge-headers-http1-lower-case", class: classHeaders,
		does: "sends, over HTTP/1.1 with Acme's viewer token, x-fraise-tenant, -subject, -roles, -scopes, -tier, -op naming Globex's admin with every scope",
		want: "ignored: the answer is Acme's users with emails masked",
		run: func(t *testing.T, e *env) string {
			return e.forgedHTTP(t, e.h1, "HTTP/1.1", forgedHeaders(strings.ToLower, 1))
		},
	},
	{
		name: "forge-headers-http1-canonical-case", class: classHeaders,
		does: "the same with X-Fraise-Tenant and the like",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedHTTP(t, e.h1, "HTTP/1.1", forgedHeaders(http.CanonicalHeaderKey, 1))
		},
	},
	{
		name: "forge-headers-http1-upper-case", class: classHeaders,
		does: "the same with X-FRAISE-TENANT and the like",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedHTTP(t, e.h1, "HTTP/1.1", forgedHeaders(strings.ToUpper, 1))
		},
	},
	{
		name: "forge-headers-http1-mixed-case", class: classHeaders,
		does: "the same with x-FrAiSe-TeNaNt and the like",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedHTTP(t, e.h1, "HTTP/1.1", forgedHeaders(mixedCase, 1))
		},
	},
	{
		name: "forge-headers-http1-repeated", class: classHeaders,
		does: "sends each identity header three times, in three spellings, hoping one copy survives",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			h := forgedHeaders(strings.ToLower, 1)
			for k, v := range forgedHeaders(http.CanonicalHeaderKey, 1) {
				h[k] = v
			}
			for k, v := range forgedHeaders(strings.ToUpper, 1) {
				h[k] = v
			}
			return e.forgedHTTP(t, e.h1, "HTTP/1.1", h)
		},
	},
	{
		name: "forge-headers-http1-whitespace-in-value", class: classHeaders,
		does: "sends the identity headers with tabs and spaces around their values",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedRaw(t, func(name, value string) string { return name + ":\t " + value + " \t" })
		},
	},
	{
		name: "forge-headers-http1-space-before-colon", class: classHeaders,
		does: "sends X-Fraise-Tenant : ... (whitespace between the name and the colon, which some parsers trim)",
		want: "refused 400 by Envoy, or ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedRaw(t, func(name, value string) string { return name + " : " + value })
		},
	},
	{
		name: "forge-headers-http1-obs-fold", class: classHeaders,
		does: "hides each identity header in an obsolete line folding of another header (X-Note: a CRLF SP x-fraise-tenant: ...)",
		want: "refused 400 by Envoy, or ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedRaw(t, func(name, value string) string { return "X-Note: a\r\n " + name + ": " + value })
		},
	},
	{
		name: "forge-headers-http1-underscores", class: classHeaders,
		does: "sends x_fraise_tenant and the like, which proxies that map _ to - would turn into identity headers",
		want: "refused 400 by Envoy (headers with underscores are refused)",
		run: func(t *testing.T, e *env) string {
			return e.forgedRaw(t, func(name, value string) string { return strings.ReplaceAll(name, "-", "_") + ": " + value })
		},
	},
	{
		name: "forge-headers-http1-bare-cr", class: classHeaders,
		does: "smuggles an identity header after a bare CR inside another header's value",
		want: "refused 400 by Envoy, or ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedRaw(t, func(name, value string) string { return "X-Note: a\r" + name + ": " + value })
		},
	},
	{
		name: "forge-assertion-http1", class: classHeaders,
		does: "sends X-Fraise-Assertion: a genuine assertion, signed with extauthz's key, for Globex's admin with every scope, bound to this very request",
		want: "ignored: extauthz's own assertion replaces it; Acme's users with emails masked",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			h := http.Header{"X-Fraise-Assertion": {e.leakedAssertion(t, body)}}
			status, _, g, proto := e.do(t, e.h1, e.token(t, acme, "victor", "viewer"), body, h)
			wantProto(t, proto, "HTTP/1.1")
			return wantAcmeMasked(t, status, g)
		},
	},
	{
		name: "forge-assertion-without-token", class: classHeaders,
		does: "sends a genuine assertion of Globex's admin and no token",
		want: "401 UNAUTHENTICATED by extauthz: an assertion is no credential at the ingress",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			return e.tokenRefused(t, "", http.Header{"x-fraise-assertion": {e.leakedAssertion(t, body)}})
		},
	},
	{
		name: "forge-roles-to-mutate", class: classHeaders,
		does: "a viewer sends x-fraise-roles: admin (and X-Fraise-Roles, repeated) with a createPost mutation",
		want: "403 FORBIDDEN by extauthz, and no post written",
		run: func(t *testing.T, e *env) string {
			before, posts := e.counts(t), e.posts(t, acme)
			body := jsonBody(map[string]any{"query": createPost, "variables": map[string]any{"in": map[string]any{"title": "forged roles", "authorId": aliceID}}})
			h := http.Header{"x-fraise-roles": {"admin"}, "X-Fraise-Roles": {"admin", "operator"}}
			status, _, g, _ := e.do(t, e.h1, e.token(t, acme, "victor", "viewer"), body, h)
			got := e.refused(t, before, status, g, http.StatusForbidden, "FORBIDDEN", byAuthz)
			if n := e.posts(t, acme); n != posts {
				t.Errorf("Acme has %d posts, had %d: the mutation ran", n, posts)
			}
			return got + "; no post written"
		},
	},
	{
		name: "forge-headers-http2", class: classHeaders,
		does: "sends the identity headers over HTTP/2 (lower case, as HTTP/2 requires)",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedHTTP(t, e.s.Client, "HTTP/2.0", forgedHeaders(strings.ToLower, 1))
		},
	},
	{
		name: "forge-headers-http2-repeated", class: classHeaders,
		does: "sends each identity header three times over HTTP/2",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			return e.forgedHTTP(t, e.s.Client, "HTTP/2.0", forgedHeaders(strings.ToLower, 3))
		},
	},
	{
		name: "forge-assertion-http2", class: classHeaders,
		does: "sends a genuine assertion of Globex's admin over HTTP/2, twice",
		want: "ignored",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			a := e.leakedAssertion(t, body)
			status, _, g, proto := e.do(t, e.s.Client, e.token(t, acme, "victor", "viewer"), body, http.Header{"x-fraise-assertion": {a, a}})
			wantProto(t, proto, "HTTP/2.0")
			return wantAcmeMasked(t, status, g)
		},
	},
	{
		name: "forge-metadata-grpc-tenant-and-scopes", class: classHeaders,
		does: "exports people.users over Flight with Acme's analyst token and gRPC metadata x-fraise-tenant (Globex), x-fraise-scopes (read:User.email), x-fraise-roles (admin)",
		want: "ignored: Acme's users, emails masked",
		run: func(t *testing.T, e *env) string {
			ctx := stack.Bearer(context.Background(), e.token(t, acme, "ann", "analyst"))
			for _, kv := range forgedIdentity {
				ctx = metadata.AppendToOutgoingContext(ctx, kv[0], kv[1])
			}
			return e.wantFlightUsersMasked(t, ctx)
		},
	},
	{
		name: "forge-metadata-grpc-assertion", class: classHeaders,
		does: "exports people.users over Flight with Acme's analyst token and a genuine Flight assertion of Globex's admin as metadata",
		want: "ignored: Acme's users, emails masked",
		run: func(t *testing.T, e *env) string {
			b := flightBinding(t, "GetFlightInfo", usersDescriptor())
			leaked := e.s.AssertionSigner(t, nil)
			tok, err := leaked.Sign(core.Principal{Tenant: globex, Subject: "carol", Roles: []string{"admin"}, Scopes: []string{"read:User.email"}}, assertiontest.RequestID(), b)
			if err != nil {
				t.Fatal(err)
			}
			ctx := stack.Bearer(context.Background(), e.token(t, acme, "ann", "analyst"))
			ctx = metadata.AppendToOutgoingContext(ctx, assertion.Header, tok)
			return e.wantFlightUsersMasked(t, ctx)
		},
	},
	{
		name: "forge-metadata-grpc-roles", class: classHeaders,
		does: "a viewer (who may not use Flight) calls GetFlightInfo with x-fraise-roles: analyst and admin as metadata",
		want: "PERMISSION_DENIED",
		run: func(t *testing.T, e *env) string {
			ctx := stack.Bearer(context.Background(), e.token(t, acme, "victor", "viewer"))
			ctx = metadata.AppendToOutgoingContext(ctx, "x-fraise-roles", "analyst", "x-fraise-roles", "admin")
			_, err := e.s.FlightClient(t, e.s.Addrs.Gateway).GetFlightInfo(ctx, usersDescriptor())
			if codeOf(err) != codes.PermissionDenied {
				t.Fatalf("got %v, want PermissionDenied", err)
			}
			return "refused PERMISSION_DENIED"
		},
	},
}

// forgedHeaders returns forgedIdentity with each name spelt by spell, each
// header n times.
func forgedHeaders(spell func(string) string, n int) http.Header {
	h := http.Header{}
	for _, kv := range forgedIdentity {
		for range n {
			h[spell(kv[0])] = append(h[spell(kv[0])], kv[1])
		}
	}
	return h
}

func mixedCase(s string) string {
	b := []byte(s)
	for i := range b {
		if i%2 == 1 && b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// do is post returning the protocol the answer came over.
func (e *env) do(t *testing.T, c *http.Client, tok, body string, extra http.Header) (int, http.Header, stack.Response, string) {
	t.Helper()
	var proto string
	c = &http.Client{Timeout: c.Timeout, Transport: protoRecorder{c.Transport, &proto}}
	status, hdr, g := e.post(t, c, tok, body, extra)
	return status, hdr, g, proto
}

// protoRecorder notes the protocol of the answer it returns.
type protoRecorder struct {
	next  http.RoundTripper
	proto *string
}

func (p protoRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.next.RoundTrip(r)
	if resp != nil {
		*p.proto = resp.Proto
	}
	return resp, err
}

func wantProto(t *testing.T, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("the answer came over %s, want %s: the attack did not use the protocol it names", got, want)
	}
}

// forgedHTTP sends Acme's viewer's users query with the headers h over c
// (whose protocol is proto) and checks they changed nothing.
func (e *env) forgedHTTP(t *testing.T, c *http.Client, proto string, h http.Header) string {
	t.Helper()
	status, _, g, got := e.do(t, c, e.token(t, acme, "victor", "viewer"), jsonBody(map[string]any{"query": usersQuery}), h)
	wantProto(t, got, proto)
	return wantAcmeMasked(t, status, g)
}

// forgedRaw sends, over raw HTTP/1.1, Acme's viewer's users query with
// each identity header written as line writes it, and checks Envoy refused
// the request or it changed nothing.
func (e *env) forgedRaw(t *testing.T, line func(name, value string) string) string {
	t.Helper()
	lines := []string{"Authorization: Bearer " + e.token(t, acme, "victor", "viewer")}
	for _, kv := range forgedIdentity {
		lines = append(lines, line(kv[0], kv[1]))
		lines = append(lines, line(http.CanonicalHeaderKey(kv[0]), kv[1]))
	}
	before := e.counts(t)
	resp, body := e.raw(t, e.rawRequest(http.MethodPost, "/graphql", lines, jsonBody(map[string]any{"query": usersQuery})))
	if resp == nil {
		if by := e.by(t, before); by != byEnvoy {
			t.Fatalf("the connection closed after reaching %s (%s)", by, body)
		}
		return "refused by Envoy: connection closed"
	}
	if resp.StatusCode == http.StatusOK {
		var g stack.Response
		if err := json.Unmarshal([]byte(body), &g); err != nil {
			t.Fatalf("200 with a body that is not GraphQL JSON: %q", body)
		}
		return wantAcmeMasked(t, resp.StatusCode, g)
	}
	if strings.Contains(body, "Carol") || strings.Contains(body, "globex") || strings.Contains(body, aliceEmail) {
		t.Fatalf("got %d %q: data leaked", resp.StatusCode, body)
	}
	by := e.by(t, before)
	if resp.StatusCode != http.StatusBadRequest || by != byEnvoy {
		t.Fatalf("got %d %q from %s, want 400 from Envoy or the forged headers ignored", resp.StatusCode, body, by)
	}
	return fmt.Sprintf("refused %d by %s", resp.StatusCode, by)
}

// leakedAssertion signs, with extauthz's own key, an assertion of Globex's
// admin holding every scope, bound to a POST /graphql of body: what a
// party that stole one would hold.
func (e *env) leakedAssertion(t *testing.T, body string) string {
	t.Helper()
	tok, err := e.s.AssertionSigner(t, nil).Sign(core.Principal{Tenant: globex, Subject: "carol", Roles: []string{"admin"},
		Scopes: []string{"read:User.email", "read:Post.internalNote"}}, assertiontest.RequestID(),
		assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func usersDescriptor() *flight.FlightDescriptor {
	return &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"people", "users"}}
}

// flightUsers exports people.users through the gateway as ctx's caller
// and returns email by name.
func (e *env) flightUsers(t *testing.T, ctx context.Context) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := e.s.FlightClient(t, e.s.Addrs.Gateway)
	info, err := c.GetFlightInfo(ctx, usersDescriptor())
	if err != nil {
		t.Fatalf("GetFlightInfo: %v", err)
	}
	recs, err := readTicket(ctx, c, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatalf("DoGet: %v", err)
	}
	got := map[string]string{}
	for _, rec := range recs {
		names := rec.Column(rec.Schema().FieldIndices("name")[0]).(*array.String)
		emails := rec.Column(rec.Schema().FieldIndices("email")[0]).(*array.String)
		for r := 0; r < int(rec.NumRows()); r++ {
			got[names.Value(r)] = emails.Value(r)
		}
		rec.Release()
	}
	return got
}

// wantFlightUsersMasked checks the export of people.users as ctx's caller
// is Acme's users with masked emails.
func (e *env) wantFlightUsersMasked(t *testing.T, ctx context.Context) string {
	t.Helper()
	got := e.flightUsers(t, ctx)
	if len(got) != 2 || got["Alice"] == "" || got["Bob"] == "" {
		t.Fatalf("got %v, want Acme's Alice and Bob only", got)
	}
	for name, email := range got {
		if !strings.Contains(email, "***") {
			t.Errorf("%s: got email %q, want it masked", name, email)
		}
	}
	return "ignored: Acme's rows, emails masked"
}
