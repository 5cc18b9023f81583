package extauthz_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
)

// TestCheckIssuerTenantBinding is security issue #13, defect 3, through
// Check: with one realm per tenant, realm acme's admin presenting a token
// that names Globex's tenant gets the generic 401, the decision log says
// why, and a token naming its own realm's tenant is allowed.
func TestCheckIssuerTenantBinding(t *testing.T) {
	t.Parallel()
	const globex = "5d1e8f22-3c4b-4a1d-8e9f-7a6b5c4d3e2f"
	acmeRealm := tokentest.NewIssuer(t, "https://sso.example.test/realms/acme", audience, now)
	globexRealm := tokentest.NewIssuer(t, "https://sso.example.test/realms/globex", audience, now)
	f := mustFixture(t, func(o *extauthz.Options) {
		acme, gx := acmeRealm.Config(), globexRealm.Config()
		acme.Tenant, gx.Tenant = tenantA, globex
		o.Issuers = []extauthz.Issuer{acme, gx}
	})
	const q = "{ users { id } }"

	d := mustDenial(t, mustCheck(t, f.client, graphqlRequest("Bearer "+acmeRealm.Sign(t, acmeRealm.Claims("alice", globex, "admin")), q)))
	if d.status != 401 || d.code != codes.Unauthenticated || d.body != generic401 || d.headers["www-authenticate"] != `Bearer error="invalid_token"` {
		t.Fatalf("realm acme naming globex: got %d (gRPC %v) %s %v, want the generic 401", d.status, d.code, d.body, d.headers)
	}
	lines := f.logs.lines(t)
	if r, _ := lines[len(lines)-1]["reason"].(string); !strings.Contains(r, `tenant "`+globex+`"`) || !strings.Contains(r, acmeRealm.Issuer) {
		t.Fatalf("got decision log reason %q, want it to name the tenant and the issuer", r)
	}

	for name, tok := range map[string]string{
		"realm acme naming acme":        acmeRealm.Sign(t, acmeRealm.Claims("alice", tenantA, "admin")),
		"realm globex naming no tenant": globexRealm.Sign(t, claimsWith(globexRealm.Claims("bob", "", "admin"), "tenant", nil)),
	} {
		ok := mustCheck(t, f.client, graphqlRequest("Bearer "+tok, q)).GetOkResponse()
		if ok == nil {
			t.Fatalf("%s: got denied, want allowed", name)
		}
		want := tenantA
		if strings.Contains(name, "globex") {
			want = globex
		}
		if got := headerMap(ok.GetHeaders())[extauthz.HeaderTenant]; got != want {
			t.Fatalf("%s: got tenant %q, want %q", name, got, want)
		}
	}
}
