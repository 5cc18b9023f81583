package stack

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
)

// Response is a GraphQL response, or the GraphQL-shaped JSON body of a
// refusal (extauthz's, Envoy's local replies, the core's).
type Response struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// Code returns the first error's extensions.code, "" when there is none.
func (r Response) Code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// HasData reports whether the response carries data other than null.
func (r Response) HasData() bool { return len(r.Data) > 0 && string(r.Data) != "null" }

// Post sends a GraphQL query to base (the gateway or the core) with c and
// returns the status, headers and decoded body, failing tb when the body
// is not GraphQL-shaped JSON.
func Post(tb testing.TB, c *http.Client, base, query string, headers map[string]string) (int, http.Header, Response) {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req, err := http.NewRequest(http.MethodPost, "https://"+base+"/graphql", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", base, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var g Response
	if err := json.Unmarshal(raw, &g); err != nil {
		tb.Fatalf("status %d: body is not GraphQL-shaped JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, g
}

// GraphQL sends body (a GraphQL request object) to the gateway as token
// and returns the status and decoded response.
func (s *Stack) GraphQL(tb testing.TB, token string, body map[string]any) (int, Response) {
	tb.Helper()
	b, _ := json.Marshal(body)
	return s.GraphQLRaw(tb, token, string(b))
}

// GraphQLRaw is GraphQL of a body given as JSON text, for bodies a Go map
// cannot write (a key twice, keys in a chosen order).
func (s *Stack) GraphQLRaw(tb testing.TB, token, body string) (int, Response) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+s.Addrs.Gateway+"/graphql", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.Client.Do(req)
	if err != nil {
		tb.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var g Response
	if err := json.Unmarshal(raw, &g); err != nil {
		tb.Fatalf("status %d: body is not GraphQL-shaped JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, g
}

// CorePost sends body to the core's HTTP port directly, presenting the
// gateway's certificate and the assertion tok, as Envoy would forward it.
func (s *Stack) CorePost(tb testing.TB, tok string, body map[string]any) (int, Response) {
	tb.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, "https://"+s.Addrs.CoreHTTP+"/graphql", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(assertion.Header, tok)
	resp, err := s.AsGateway.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var g Response
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		tb.Fatalf("status %d: body is not GraphQL-shaped JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, g
}

// MustServe waits until the gateway serves token a query: `fraise dev`
// reports ready once its listeners are bound, and a Check that reaches
// extauthz before it serves outlasts the gateway's authz timeout (403).
func (s *Stack) MustServe(tb testing.TB, token string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, g := s.GraphQL(tb, token, map[string]any{"query": "{ __typename }"})
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the stack does not serve: status %d errors %+v", status, g.Errors)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// AssertionSigner returns a signer with the stack's extauthz key, on clock
// now (nil: time.Now): it signs what extauthz would.
func (s *Stack) AssertionSigner(tb testing.TB, now func() time.Time) *assertion.Signer {
	tb.Helper()
	pem, err := os.ReadFile(filepath.Join(s.Dir, "keys", "assertion.key"))
	if err != nil {
		tb.Fatal(err)
	}
	key, err := assertion.ParsePrivateKeyPEM(pem)
	if err != nil {
		tb.Fatal(err)
	}
	sg, err := assertion.NewSigner(key, assertion.KeyID(key.Public().(ed25519.PublicKey)), now)
	if err != nil {
		tb.Fatal(err)
	}
	return sg
}

// Assertion signs, as extauthz would, the assertion of one request to the
// core bound to b: the core accepts it once.
func (s *Stack) Assertion(tb testing.TB, tenant, subject, roles string, b assertion.Binding) string {
	tb.Helper()
	tok, err := s.AssertionSigner(tb, nil).Sign(core.Principal{Tenant: tenant, Subject: subject, Roles: strings.Split(roles, ",")}, assertiontest.RequestID(), b)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// UserNames returns the names in a { users { id name } } response, sorted,
// failing tb when a user has no id.
func UserNames(tb testing.TB, g Response) []string {
	tb.Helper()
	var d struct {
		Users []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"users"`
	}
	if err := json.Unmarshal(g.Data, &d); err != nil {
		tb.Fatalf("data %s: %v", g.Data, err)
	}
	var names []string
	for _, u := range d.Users {
		if u.ID == "" {
			tb.Errorf("user %q has no id", u.Name)
		}
		names = append(names, u.Name)
	}
	slices.Sort(names)
	return names
}

// MetricValue returns the value of the series named exactly (with its
// labels) in a Prometheus text exposition, 0 when absent.
func MetricValue(exposition, series string) float64 {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// MetricSum returns the sum of every series of the metric name (any
// labels) in a Prometheus text exposition.
func MetricSum(exposition, name string) float64 {
	var sum float64
	for _, l := range strings.Split(exposition, "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || rest == "" || rest[0] != '{' && rest[0] != ' ' {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			f, _ := strconv.ParseFloat(strings.TrimSpace(rest[i+1:]), 64)
			sum += f
		}
	}
	return sum
}
