package extauthz_test

import (
	"context"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz"
)

// TestObserveOutcomes checks what metrics are built from: each Check
// reports one Outcome whose result, status, credential kind and operation
// class match what the client was answered.
func TestObserveOutcomes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []extauthz.Outcome
	f := mustFixture(t, func(o *extauthz.Options) {
		o.Observe = func(oc extauthz.Outcome) { mu.Lock(); got = append(got, oc); mu.Unlock() }
	})
	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
		want extauthz.Outcome
	}{
		{"viewer reads", graphqlRequest("Bearer "+f.token(t, "viewer"), "{ users { id } }"),
			extauthz.Outcome{Result: extauthz.OutcomeAllow, Status: 200, Kind: core.KindJWT, Op: "read"}},
		{"operator writes", graphqlRequest("Bearer "+f.token(t, "operator"), "mutation UpdateRule { updateRule(id: 1) { id } }"),
			extauthz.Outcome{Result: extauthz.OutcomeAllow, Status: 200, Kind: core.KindJWT, Op: "write"}},
		{"viewer writes", graphqlRequest("Bearer "+f.token(t, "viewer"), "mutation UpdateRule { updateRule(id: 1) { id } }"),
			extauthz.Outcome{Result: extauthz.OutcomeDeny, Status: 403, Code: core.CodeForbidden, Kind: core.KindJWT, Op: "write"}},
		{"no token", graphqlRequest("", "{ users { id } }"),
			extauthz.Outcome{Result: extauthz.OutcomeDeny, Status: 401, Code: core.CodeUnauthenticated}},
		{"bad token", graphqlRequest("Bearer not.a.jwt", "{ users { id } }"),
			extauthz.Outcome{Result: extauthz.OutcomeDeny, Status: 401, Code: core.CodeUnauthenticated}},
		{"no HTTP attributes", &authv3.CheckRequest{},
			extauthz.Outcome{Result: extauthz.OutcomeError, Status: 500, Code: core.CodeInvalid}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			_, _ = f.srv.Check(context.Background(), tc.req)
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("got %d outcomes, want 1", len(got))
			}
			o := got[0]
			if o.Latency <= 0 {
				t.Errorf("latency %v, want > 0", o.Latency)
			}
			o.Latency, o.Cached = 0, false
			if o != tc.want {
				t.Errorf("got %+v, want %+v", o, tc.want)
			}
		})
	}
}
