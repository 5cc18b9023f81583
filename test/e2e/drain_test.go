package e2e_test

import (
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/stack"
)

// TestCoreDrainDelay stops the stack with server.drain_delay set and checks
// the order a load balancer needs: /readyz fails at once, the core still
// answers GraphQL while the delay runs, and only then stops listening.
func TestCoreDrainDelay(t *testing.T) {
	t.Parallel()
	const delay = 3 * time.Second
	s := stack.StartWith(t, stack.Options{Env: map[string]string{"FRAISE_SERVER_DRAIN_DELAY": delay.String()}})
	readyz := func() int {
		resp, err := http.Get("http://" + s.Addrs.CoreAdmin + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := readyz(); got != http.StatusOK {
		t.Fatalf("/readyz before stopping: got %d, want 200", got)
	}
	// The whole stack serves (extauthz has loaded its policy) before it
	// is told to stop.
	if status, _, _ := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }",
		map[string]string{"Authorization": "Bearer " + s.Token(t, demo.TenantAcme, "alice", "viewer")}); status != http.StatusOK {
		t.Fatalf("through the gateway before stopping: got %d, want 200", status)
	}
	body, _ := json.Marshal(map[string]any{"query": "{ users { id name } }"}) // as post sends it
	tok := s.Assertion(t, demo.TenantAcme, "alice", "viewer", assertiontest.GraphQL(http.MethodPost, "/graphql", body))

	stopped := time.Now()
	s.Stop()
	if !await.Within(delay/2-time.Since(stopped), func() bool { return readyz() == http.StatusServiceUnavailable }) {
		t.Fatalf("/readyz still ready %s after the stop", time.Since(stopped))
	}
	status, _, g := stack.Post(t, s.AsGateway, s.Addrs.CoreHTTP, "{ users { id name } }", map[string]string{assertion.Header: tok})
	if since := time.Since(stopped); since >= delay {
		t.Fatalf("the drain check took %s, longer than the delay: rerun on a quieter machine", since)
	}
	if status != http.StatusOK || !slices.Equal(stack.UserNames(t, g), []string{"Alice", "Bob"}) {
		t.Fatalf("during the drain delay: got %d %+v, want Acme's users served", status, g)
	}
	// After the delay the listener closes.
	if !await.WithinEvery(delay+10*time.Second-time.Since(stopped), 50*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", s.Addrs.CoreHTTP, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}) {
		t.Fatalf("the core still listens %s after the stop", time.Since(stopped))
	}
	if since := time.Since(stopped); since < delay {
		t.Fatalf("the core stopped listening %s after the stop, before its %s drain delay", since, delay)
	}
}
