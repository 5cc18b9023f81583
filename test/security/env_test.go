package security_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// The attacker's view of the demo data: two tenants, their users and
// posts (deploy/demo/seed.sql).
const (
	acme        = demo.TenantAcme
	globex      = demo.TenantGlobex
	aliceID     = "a0000000-0000-4000-8000-00000000000a"
	carolID     = "c0000000-0000-4000-8000-00000000000c"
	globexPost  = "c1000000-0000-4000-8000-000000000001"
	globexNote  = "secret plan" // Globex's post's internal note
	acmeNote    = "launch"      // an Acme post's internal note
	aliceEmail  = "alice@acme.test"
	usersQuery  = "{ users { id name email } }"
	createPost  = `mutation($in: CreatePostInput!) { createPost(input: $in) { __typename } }`
	acmeIdPName = "https://acme-idp.security.test"
	partnerIdP  = "https://partners-idp.security.test"
)

// suiteTOML is what the suite's stack adds to the default one: Flight
// datasets over the demo's GraphQL types (their @mask and @auth apply),
// observers that give up on the first failure, and two more token issuers
// bound to tenants, besides the development issuer that speaks for all.
const suiteTOML = `
[observers]
enabled = true
max_attempts = 1
[observers.slack]
timeout = "2s"
[admission.observers]
max_concurrent = 8
max_concurrent_per_tenant = 8

[[flight.datasets]]
name = "people.users"
graphql_type = "User"
columns = [{ name = "id", type = "uuid" }, { name = "name", type = "text" }, { name = "email", type = "text" }]
[[flight.datasets]]
name = "blog.posts"
graphql_type = "Post"
columns = [{ name = "id", type = "uuid" }, { name = "title", type = "text" }, { name = "internal_note", type = "text" }]

# One realm per tenant: Acme's identity provider speaks for Acme only.
[[authz.issuers]]
issuer = %q
audiences = [%q]
jwks_file = %q
algorithms = ["ES256"]
tenant = %q

# A realm shared by some tenants: the token's claim picks one of them.
[[authz.issuers]]
issuer = %q
audiences = [%q]
jwks_file = %q
algorithms = ["ES256"]
tenants = [%q]
`

// env is what the attacks share: the stack and the attacker's tools.
type env struct {
	s *stack.Stack
	// dev is the development issuer, which the stack trusts for every
	// tenant; acmeIdP is bound to Acme, partners to Acme alone.
	dev, acmeIdP, partners issuer
	// h1 speaks HTTP/1.1 only, keeping header names as written;
	// s.Client speaks HTTP/2 to Envoy. Both present the user's
	// certificate.
	h1 *http.Client
}

// newEnv starts the suite's stack and waits until it serves.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		acmeIdP:  newIssuer(t, acmeIdPName),
		partners: newIssuer(t, partnerIdP),
	}
	toml := fmt.Sprintf(suiteTOML,
		e.acmeIdP.iss, config.DevAudience, e.acmeIdP.writeJWKS(t, dir), acme,
		e.partners.iss, config.DevAudience, e.partners.writeJWKS(t, dir), acme)
	e.s = stack.StartWith(t, stack.Options{
		TOML:      toml,
		SetupSQL:  "SELECT fraise.observe_table('public.posts')",
		PerTenant: 100000,
		// Production settings the defaults leave to development.
		Env: map[string]string{"FRAISE_SERVER_INTROSPECTION": "false"},
	})
	e.dev = devIssuer(t, e.s.Dir)
	e.h1 = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: e.s.TLSConfig(t, true),
		// A non-nil empty map turns HTTP/2 off.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	e.s.MustServe(t, e.token(t, acme, "alice", "admin"))
	return e
}

// issuer is a token issuer whose private key the attack holds (the
// stack's development issuer's, or one of the suite's identity
// providers').
type issuer struct {
	iss string
	kid string
	key *ecdsa.PrivateKey
}

func newIssuer(t *testing.T, iss string) issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{iss: iss, kid: strings.TrimPrefix(iss, "https://"), key: key}
}

// writeJWKS writes the issuer's public key as a JWKS under dir and
// returns its path.
func (i issuer) writeJWKS(t *testing.T, dir string) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, i.kid+".jwks")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// devIssuer reads the development issuer's key and key id from the
// stack's keys: what `fraise token` signs with.
func devIssuer(t *testing.T, dir string) issuer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "keys", "dev-issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	b, err = os.ReadFile(filepath.Join(dir, "keys", "dev-issuer.jwks"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("dev-issuer.jwks: %v, %d keys", err, len(set.Keys))
	}
	return issuer{iss: config.DevIssuer, kid: set.Keys[0].KeyID, key: k.(*ecdsa.PrivateKey)}
}

// claims returns the claims of a valid token of the issuer for subject of
// tenant ("" for none) with roles (comma-separated), valid for an hour.
func (i issuer) claims(tenant, subject, roles string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": i.iss, "aud": config.DevAudience, "sub": subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"roles": strings.Split(roles, ","),
	}
	if tenant != "" {
		c["tenant"] = tenant
	}
	return c
}

// header returns the JWS header the issuer signs with.
func (i issuer) header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "JWT", "kid": i.kid}
}

// sign signs claims under header with the issuer's key (ES256).
func (i issuer) sign(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	input := jwsInput(t, header, claims)
	return input + "." + b64(es256(t, i.key, input))
}

// token is a valid token of the issuer.
func (i issuer) token(t *testing.T, tenant, subject, roles string) string {
	t.Helper()
	return i.sign(t, i.header(), i.claims(tenant, subject, roles))
}

// token is a valid development token for subject of tenant with roles
// and, space-separated, scopes.
func (e *env) token(t *testing.T, tenant, subject, roles string, scopes ...string) string {
	t.Helper()
	c := e.dev.claims(tenant, subject, roles)
	if len(scopes) > 0 {
		c["scope"] = strings.Join(scopes, " ")
	}
	return e.dev.sign(t, e.dev.header(), c)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwsInput(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return b64(h) + "." + b64(c)
}

// es256 is the JWS ES256 signature of input: r and s, 32 bytes each.
func es256(t *testing.T, key *ecdsa.PrivateKey, input string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

func hs256(secret []byte, input string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return m.Sum(nil)
}

// graphQLResponse is what the suite's clients accept: GraphQL over HTTP's
// own media type, with which a request the server refuses (a limit, a
// missing scope) is a 4xx rather than a 200 with errors.
const graphQLResponse = "application/graphql-response+json, application/json;q=0.9"

// post sends body to the gateway's /graphql with c, the bearer token tok
// ("" for none) and the headers extra, whose names are sent as written
// (HTTP/1.1; HTTP/2 lower-cases them), and returns the status, headers
// and body, failing t when the body is not GraphQL-shaped JSON: every
// refusal, whoever writes it, must be.
func (e *env) post(t *testing.T, c *http.Client, tok, body string, extra http.Header) (int, http.Header, stack.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+e.s.Addrs.Gateway+"/graphql", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", graphQLResponse)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var g stack.Response
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("status %d: body is not GraphQL-shaped JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, g
}

// query is post of {"query": q} over HTTP/2.
func (e *env) query(t *testing.T, tok, q string) (int, stack.Response) {
	t.Helper()
	status, _, g := e.post(t, e.s.Client, tok, jsonBody(map[string]any{"query": q}), nil)
	return status, g
}

func jsonBody(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// counts are how many requests extauthz and the server have seen: the
// suite tells by them which layer refused an attack, and that a refused
// request executed nothing.
type counts struct{ authz, core float64 }

func (e *env) counts(t *testing.T) counts {
	t.Helper()
	a := e.metrics(t, e.s.Addrs.AuthzAdmin)
	c := e.metrics(t, e.s.Addrs.CoreAdmin)
	return counts{
		authz: stack.MetricSum(a, "fraise_authz_checks_total"),
		core: stack.MetricSum(c, "fraise_http_requests_total") + stack.MetricSum(c, "fraise_admission_decisions_total") +
			stack.MetricSum(c, "fraise_flight_calls_total"),
	}
}

func (e *env) metrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Layers, as by reports them.
const (
	byEnvoy = "Envoy"
	byAuthz = "extauthz"
	byCore  = "the server"
)

// by names the furthest layer a request sent since before reached.
func (e *env) by(t *testing.T, before counts) string {
	t.Helper()
	after := e.counts(t)
	switch {
	case after.core != before.core:
		return byCore
	case after.authz != before.authz:
		return byAuthz
	}
	return byEnvoy
}

// refused checks a GraphQL-shaped refusal with status and code and no
// data, reached no further than layer (any when ""), and returns its
// report.
func (e *env) refused(t *testing.T, before counts, status int, g stack.Response, wantStatus int, wantCode, layer string) string {
	t.Helper()
	by := e.by(t, before)
	ok := true
	if status != wantStatus || g.Code() != wantCode {
		ok = false
		t.Errorf("got %d %s (%+v), want %d %s", status, g.Code(), g.Errors, wantStatus, wantCode)
	}
	if g.HasData() {
		ok = false
		t.Errorf("got data %s, want none", g.Data)
	}
	if layer != "" && by != layer && !(layer == byAuthz && by == byEnvoy) {
		ok = false
		t.Errorf("reached %s, want it refused by %s", by, layer)
	}
	if !ok {
		return fmt.Sprintf("answered %d %s by %s (data: %t), want %d %s", status, or(g.Code(), "(no code)"), by, g.HasData(), wantStatus, wantCode)
	}
	return fmt.Sprintf("refused %d %s by %s", status, g.Code(), by)
}

// raw sends req, a raw HTTP/1.1 request, to the gateway over mTLS with the
// user's certificate and returns the response (nil when Envoy closed the
// connection without one) and its body.
func (e *env) raw(t *testing.T, req string) (*http.Response, string) {
	t.Helper()
	c := e.s.TLSConfig(t, true)
	c.NextProtos = []string{"http/1.1"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.s.Addrs.Gateway, c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// rawRequest writes an HTTP/1.1 request for the gateway: the request line,
// the lines of headers as given, then body with its length.
func (e *env) rawRequest(method, target string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: localhost\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == http.MethodPost {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	return b.String()
}

// count runs a counting query as the database owner (row-level security
// does not apply): what the database holds, whatever the API says.
func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.s.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// posts counts tenant's posts in the database.
func (e *env) posts(t *testing.T, tenant string) int {
	t.Helper()
	return e.count(t, "SELECT count(*) FROM public.posts WHERE tenant_id = $1", tenant)
}

// users decodes { users { id name email } }.
type userRow struct{ ID, Name, Email string }

func users(t *testing.T, g stack.Response) []userRow {
	t.Helper()
	var d struct{ Users []userRow }
	if err := json.Unmarshal(g.Data, &d); err != nil {
		t.Fatalf("data %s: %v", g.Data, err)
	}
	return d.Users
}

// wantAcmeMasked checks a { users { id name email } } answer is Acme's
// users as a caller without read:User.email sees them: Alice and Bob,
// emails masked.
func wantAcmeMasked(t *testing.T, status int, g stack.Response) string {
	t.Helper()
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("got %d %+v, want 200", status, g.Errors)
	}
	var names []string
	for _, u := range users(t, g) {
		names = append(names, u.Name)
		if !strings.Contains(u.Email, "***") {
			t.Errorf("user %s: got email %q, want it masked", u.Name, u.Email)
		}
	}
	if strings.Join(names, ",") != "Alice,Bob" && strings.Join(names, ",") != "Bob,Alice" {
		t.Errorf("got users %v, want Acme's Alice and Bob only", names)
	}
	return "ignored: the token's tenant, roles and scopes served (Acme's users, emails masked)"
}

// selfSigned returns a certificate and key of a CA the stack does not
// trust, for name.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), DNSNames: []string{name, "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// doJSON sends req with c and returns the status and the GraphQL-shaped
// body, failing t when it is not.
func doJSON(t *testing.T, c *http.Client, req *http.Request) (int, stack.Response) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var g stack.Response
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("status %d: body is not GraphQL-shaped JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, g
}
