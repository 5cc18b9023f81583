package security_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/test/stack"
)

// The attacks of this class speak to the server's ports directly, presenting
// the gateway's certificate: the position of a party inside the mesh that
// copied an assertion (from a log, a proxy, a core dump), which the
// assertion's binding and single use must make worthless.
var assertionAttacks = []attack{
	{
		name: "assertion-replayed", class: classAssertion,
		does: "presents a genuine assertion, issued for a viewer's query, to the server twice (security #13, defect 4)",
		want: "the first use runs the query; the second is refused 401 UNAUTHENTICATED: an assertion is spent once",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			tok := e.s.Assertion(t, acme, "victor", "viewer", assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body)))
			status, _, g := e.core(t, tok, body)
			wantAcmeMasked(t, status, g)
			before := e.counts(t)
			status, _, g = e.core(t, tok, body)
			return "first use served, replay " + e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byCore)
		},
	},
	{
		name: "assertion-graphql-at-flight-listener", class: classAssertion,
		does: "presents an assertion issued for the GraphQL listener to the server's Flight port",
		want: "UNAUTHENTICATED: each listener accepts its own audience only",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			tok := e.s.Assertion(t, acme, "ann", "admin", assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body)))
			_, err := e.s.FlightClient(t, e.s.Addrs.CoreFlight).GetFlightInfo(withAssertion(t, tok), usersDescriptor())
			return wantGRPCCode(t, err, codes.Unauthenticated)
		},
	},
	{
		name: "assertion-flight-at-graphql-listener", class: classAssertion,
		does: "presents an assertion issued for a Flight call to the server's GraphQL port",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			tok := e.s.Assertion(t, acme, "ann", "admin", flightBinding(t, "GetFlightInfo", usersDescriptor()))
			before := e.counts(t)
			status, _, g := e.core(t, tok, jsonBody(map[string]any{"query": usersQuery}))
			return e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byCore)
		},
	},
	{
		name: "assertion-bound-to-another-operation", class: classAssertion,
		does: "presents a viewer's query assertion with a createPost mutation",
		want: "403 FORBIDDEN, and no post written",
		run: func(t *testing.T, e *env) string {
			q := jsonBody(map[string]any{"query": usersQuery})
			tok := e.s.Assertion(t, acme, "victor", "viewer", assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(q)))
			posts, before := e.posts(t, acme), e.counts(t)
			status, _, g := e.core(t, tok, jsonBody(map[string]any{"query": createPost,
				"variables": map[string]any{"in": map[string]any{"title": "rebound", "authorId": aliceID}}}))
			got := e.refused(t, before, status, g, http.StatusForbidden, "FORBIDDEN", byCore)
			if n := e.posts(t, acme); n != posts {
				t.Errorf("Acme has %d posts, had %d: the mutation ran", n, posts)
			}
			return got + "; no post written"
		},
	},
	{
		name: "assertion-bound-to-another-method", class: classAssertion,
		does: "presents an assertion issued for a GET of the query with a POST of it",
		want: "403 FORBIDDEN",
		run: func(t *testing.T, e *env) string {
			b := assertiontest.GraphQL(http.MethodGet, "/graphql?query="+strings.ReplaceAll(usersQuery, " ", "+"), nil)
			tok := e.s.Assertion(t, acme, "victor", "viewer", b)
			before := e.counts(t)
			status, _, g := e.core(t, tok, jsonBody(map[string]any{"query": usersQuery}))
			return e.refused(t, before, status, g, http.StatusForbidden, "FORBIDDEN", byCore)
		},
	},
	{
		name: "assertion-bound-to-another-path", class: classAssertion,
		does: "presents an assertion issued for the same body at another path",
		want: "403 FORBIDDEN",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			b := assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body))
			b.Path = "/graphql/batch"
			tok := e.s.Assertion(t, acme, "victor", "viewer", b)
			before := e.counts(t)
			status, _, g := e.core(t, tok, body)
			return e.refused(t, before, status, g, http.StatusForbidden, "FORBIDDEN", byCore)
		},
	},
	{
		name: "assertion-with-a-body-hash-at-graphql", class: classAssertion,
		does: "presents a GraphQL assertion that carries a body hash (what extauthz gives requests it did not read as GraphQL) with a query",
		want: "refused: the GraphQL listener runs only operations extauthz decided on",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			b := assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body))
			sum := sha256.Sum256([]byte(body))
			b.Operation, b.Body = "", hex.EncodeToString(sum[:])
			tok := e.s.Assertion(t, acme, "victor", "viewer", b)
			before := e.counts(t)
			status, _, g := e.core(t, tok, body)
			return e.refused(t, before, status, g, http.StatusForbidden, "FORBIDDEN", byCore)
		},
	},
	{
		name: "assertion-bound-to-another-dataset", class: classAssertion,
		does: "presents a Flight assertion issued for GetFlightInfo of people.users with a descriptor of blog.posts",
		want: "PERMISSION_DENIED",
		run: func(t *testing.T, e *env) string {
			tok := e.s.Assertion(t, acme, "ann", "analyst", flightBinding(t, "GetFlightInfo", usersDescriptor()))
			posts := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"blog", "posts"}}
			_, err := e.s.FlightClient(t, e.s.Addrs.CoreFlight).GetFlightInfo(withAssertion(t, tok), posts)
			return wantGRPCCode(t, err, codes.PermissionDenied)
		},
	},
	{
		name: "assertion-signed-with-another-key", class: classAssertion,
		does: "signs an assertion of Globex's admin with its own Ed25519 key under extauthz's key id",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			kid := e.s.AssertionSigner(t, nil).KeyID()
			sg, err := assertion.NewSigner(priv, kid, nil)
			if err != nil {
				t.Fatal(err)
			}
			body := jsonBody(map[string]any{"query": usersQuery})
			tok, err := sg.Sign(core.Principal{Tenant: globex, Subject: "carol", Roles: []string{"admin"}}, assertiontest.RequestID(),
				assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			before := e.counts(t)
			status, _, g := e.core(t, tok, body)
			return e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byCore)
		},
	},
	{
		name: "assertion-expired", class: classAssertion,
		does: "presents a genuine assertion issued two minutes ago (expired a minute ago)",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			sg := e.s.AssertionSigner(t, func() time.Time { return time.Now().Add(-2 * time.Minute) })
			tok, err := sg.Sign(core.Principal{Tenant: acme, Subject: "alice", Roles: []string{"admin"}}, assertiontest.RequestID(),
				assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			before := e.counts(t)
			status, _, g := e.core(t, tok, body)
			return e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byCore)
		},
	},
	{
		name: "assertion-long-lived", class: classAssertion,
		does: "presents an assertion signed with extauthz's key but valid for a day (a replay window no cache would hold)",
		want: "401 UNAUTHENTICATED: the server refuses an expiry more than 65 s ahead",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			b := assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body))
			now := time.Now()
			tok := e.assertionClaims(t, map[string]any{"iss": assertion.Issuer, "sub": "alice", "aud": []string{b.Audience},
				"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(), "jti": assertiontest.RequestID(),
				"tenant": acme, "roles": []string{"admin"}, "method": b.Method, "path": b.Path, "op_sha256": b.Operation}, "EdDSA")
			before := e.counts(t)
			status, _, g := e.core(t, tok, body)
			return e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byCore)
		},
	},
	{
		name: "assertion-alg-none", class: classAssertion,
		does: "presents an unsigned assertion (alg none) of Acme's admin",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": usersQuery})
			b := assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body))
			now := time.Now()
			tok := e.assertionClaims(t, map[string]any{"iss": assertion.Issuer, "sub": "alice", "aud": []string{b.Audience},
				"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": assertiontest.RequestID(),
				"tenant": acme, "roles": []string{"admin"}, "method": b.Method, "path": b.Path, "op_sha256": b.Operation}, "none")
			before := e.counts(t)
			status, _, g := e.core(t, tok, body)
			return e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byCore)
		},
	},
	{
		name: "core-identity-headers-without-assertion", class: classAssertion,
		does: "sends the server x-fraise-tenant, -subject, -roles, -scopes and a valid bearer token, but no assertion",
		want: "401 UNAUTHENTICATED: the server derives identity from the assertion alone",
		run: func(t *testing.T, e *env) string {
			h := map[string]string{"Authorization": "Bearer " + e.token(t, acme, "alice", "admin")}
			for _, kv := range forgedIdentity {
				h[kv[0]] = kv[1]
			}
			before := e.counts(t)
			status, _, g := stack.Post(t, e.s.AsGateway, e.s.Addrs.CoreHTTP, usersQuery, h)
			return e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byCore)
		},
	},
}

// core posts body to the server's GraphQL port as Envoy would, presenting
// the gateway's certificate and the assertion tok.
func (e *env) core(t *testing.T, tok, body string) (int, http.Header, stack.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+e.s.Addrs.CoreHTTP+"/graphql", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", graphQLResponse)
	req.Header.Set(assertion.Header, tok)
	resp, err := e.s.AsGateway.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var g stack.Response
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("status %d: body is not GraphQL-shaped JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, g
}

// assertionClaims signs claims as an assertion with extauthz's key and
// key id, or unsigned when alg is "none".
func (e *env) assertionClaims(t *testing.T, claims map[string]any, alg string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.s.Dir, "keys", "assertion.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := assertion.ParsePrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	input := jwsInput(t, map[string]any{"alg": alg, "typ": "JWT", "kid": assertion.KeyID(key.Public().(ed25519.PublicKey))}, claims)
	if alg == "none" {
		return input + "."
	}
	return input + "." + b64(ed25519.Sign(key, []byte(input)))
}

// flightBinding is the binding extauthz gives a unary Flight call of
// method with descriptor d.
func flightBinding(t *testing.T, method string, d *flight.FlightDescriptor) assertion.Binding {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return assertion.Binding{Audience: assertion.AudienceFlight, Method: http.MethodPost,
		Path: "/arrow.flight.protocol.FlightService/" + method, Body: hex.EncodeToString(sum[:])}
}

// withAssertion is a call context carrying the assertion tok, with a
// deadline that ends with t.
func withAssertion(t *testing.T, tok string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, assertion.Header, tok)
}

func codeOf(err error) codes.Code { return status.Code(err) }

func wantGRPCCode(t *testing.T, err error, want codes.Code) string {
	t.Helper()
	if codeOf(err) != want {
		t.Fatalf("got %v, want %v", err, want)
	}
	return "refused " + want.String()
}

// readTicket runs DoGet and returns its batches, retained: the caller
// releases them.
func readTicket(ctx context.Context, c flight.Client, t *flight.Ticket) ([]arrow.RecordBatch, error) {
	stream, err := c.DoGet(ctx, t)
	if err != nil {
		return nil, err
	}
	rdr, err := flight.NewRecordReader(stream)
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	var out []arrow.RecordBatch
	for rdr.Next() {
		rec := rdr.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	return out, rdr.Err()
}
