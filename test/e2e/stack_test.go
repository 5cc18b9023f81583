// Package e2e holds black-box tests of the whole stack: `fraise dev` started
// through the same Run the binary runs, on free loopback ports, against the
// harness's throwaway PostgreSQL and Redis, spoken to over mTLS HTTP as a
// client would.
package e2e_test

import (
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/stack"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func TestWalkingSkeleton(t *testing.T) {
	t.Parallel()
	s := stack.Start(t)
	const q = "{ users { id name } }"
	acme := s.Token(t, demo.TenantAcme, "alice", "viewer")
	globex := s.Token(t, demo.TenantGlobex, "carol", "viewer")

	t.Run("TLS without a client certificate is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+s.Addrs.Gateway+"/graphql", strings.NewReader(`{"query":"{ users { id } }"}`))
		req.Header.Set("Authorization", "Bearer "+acme)
		resp, err := s.NoCert.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want the TLS handshake refused", resp.StatusCode)
		}
	})

	t.Run("no token gives 401 with a GraphQL-shaped body", func(t *testing.T) {
		status, hdr, g := stack.Post(t, s.Client, s.Addrs.Gateway, q, nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("got status %d, want 401", status)
		}
		if len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
			t.Fatalf("got errors %+v, want extensions.code UNAUTHENTICATED", g.Errors)
		}
		if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("got WWW-Authenticate %q, want Bearer", hdr.Get("WWW-Authenticate"))
		}
	})

	t.Run("a bad token gives 401", func(t *testing.T) {
		status, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + acme[:len(acme)-4] + "AAAA"})
		if status != http.StatusUnauthorized || len(g.Errors) == 0 {
			t.Fatalf("got status %d errors %+v, want 401 with errors", status, g.Errors)
		}
	})

	t.Run("tenant A sees exactly its users", func(t *testing.T) {
		status, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + acme})
		if status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("got status %d errors %+v, want 200", status, g.Errors)
		}
		if got, want := stack.UserNames(t, g), []string{"Alice", "Bob"}; !slices.Equal(got, want) {
			t.Fatalf("got users %v, want %v", got, want)
		}
	})

	t.Run("tenant B sees exactly its users", func(t *testing.T) {
		_, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + globex})
		if got, want := stack.UserNames(t, g), []string{"Carol", "Dave"}; !slices.Equal(got, want) {
			t.Fatalf("got users %v, want %v", got, want)
		}
	})

	t.Run("forged identity headers change nothing", func(t *testing.T) {
		_, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, q, map[string]string{
			"Authorization":      "Bearer " + acme,
			"x-fraise-tenant":    demo.TenantGlobex,
			"x-fraise-subject":   "carol",
			"x-fraise-roles":     "admin",
			"x-fraise-assertion": "forged",
		})
		if got, want := stack.UserNames(t, g), []string{"Alice", "Bob"}; !slices.Equal(got, want) {
			t.Fatalf("got users %v, want %v (the forged tenant must be ignored)", got, want)
		}
	})

	t.Run("the core refuses an end user's certificate", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+s.Addrs.CoreHTTP+"/graphql", strings.NewReader(`{"query":"{ users { id } }"}`))
		resp, err := s.Client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want the TLS handshake refused: only the gateway's certificate opens the core", resp.StatusCode)
		}
	})

	t.Run("the core refuses requests without a valid assertion", func(t *testing.T) {
		for _, hdrs := range []map[string]string{
			nil,
			{"x-fraise-tenant": demo.TenantAcme, "x-fraise-subject": "alice"},
			{"x-fraise-assertion": "eyJhbGciOiJFZERTQSJ9.e30.AAAA"},
			{"Authorization": "Bearer " + acme},
		} {
			status, _, g := stack.Post(t, s.AsGateway, s.Addrs.CoreHTTP, q, hdrs)
			if status != http.StatusUnauthorized || len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
				t.Fatalf("headers %v: got status %d errors %+v, want 401 UNAUTHENTICATED", hdrs, status, g.Errors)
			}
			if len(g.Data) > 0 && string(g.Data) != "null" {
				t.Fatalf("headers %v: got data %s, want none", hdrs, g.Data)
			}
		}
	})

	t.Run("the per-tenant limit answers 429 while another tenant is served", func(t *testing.T) {
		var limited bool
		for i := 0; i < 2*stack.PerTenantLimit+2 && !limited; i++ {
			status, hdr, g := stack.Post(t, s.Client, s.Addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + acme})
			switch status {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				limited = true
				ra, err := strconv.Atoi(hdr.Get("Retry-After"))
				if err != nil || ra < 0 || ra > 60 {
					t.Errorf("got Retry-After %q, want seconds until the minute resets", hdr.Get("Retry-After"))
				}
				if len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "RATE_LIMITED" {
					t.Errorf("got errors %+v, want extensions.code RATE_LIMITED", g.Errors)
				}
			default:
				t.Fatalf("request %d: got status %d, want 200 or 429", i, status)
			}
		}
		if !limited {
			t.Fatalf("no 429 after %d requests with a limit of %d a minute", 2*stack.PerTenantLimit+2, stack.PerTenantLimit)
		}
		status, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + globex})
		if status != http.StatusOK {
			t.Fatalf("tenant B: got status %d, want 200 while tenant A is limited", status)
		}
		if got, want := stack.UserNames(t, g), []string{"Carol", "Dave"}; !slices.Equal(got, want) {
			t.Fatalf("tenant B: got users %v, want %v", got, want)
		}
	})

	t.Run("extauthz's metrics count the gateway's checks", func(t *testing.T) {
		if s.Addrs.AuthzAdmin == "" {
			t.Fatal("fraise dev did not report extauthz's admin address")
		}
		resp, err := http.Get("http://" + s.Addrs.AuthzAdmin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The subtests above sent tokens that were accepted for reads and
		// requests refused for want of one: both were counted.
		allowed := stack.MetricValue(string(b), `fraise_authz_checks_total{kind="jwt",op="read",result="allow",status="200"}`)
		refused := stack.MetricValue(string(b), `fraise_authz_checks_total{kind="none",op="",result="deny",status="401"}`)
		if allowed < 3 || refused < 2 {
			t.Fatalf("got %v allowed reads and %v refusals without a credential, want at least 3 and 2:\n%s", allowed, refused, b)
		}
	})
}
