package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/stack"
)

// consoleClient is a browser's view of the console through the ingress:
// the cookies the development login set, sent back on every request, and
// the CSRF cookie's value echoed on writes.
type consoleClient struct {
	s       *stack.Stack
	cookies map[string]string
}

// login signs in as subject through the development login.
func login(t *testing.T, s *stack.Stack, subject string) *consoleClient {
	t.Helper()
	c := &consoleClient{s: s, cookies: map[string]string{}}
	status, hdr, body := c.do(t, "POST", "/console/api/dev/login", `{"subject":"`+subject+`"}`)
	if status != http.StatusNoContent {
		t.Fatalf("login as %s: got %d %s", subject, status, body)
	}
	for _, ck := range (&http.Response{Header: hdr}).Cookies() {
		c.cookies[ck.Name] = ck.Value
	}
	if c.cookies["fraise_session"] == "" || c.cookies["fraise_csrf"] == "" {
		t.Fatalf("login as %s: got cookies %v, want the session and CSRF cookies", subject, c.cookies)
	}
	return c
}

func (c *consoleClient) do(t *testing.T, method, path, body string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+c.s.Addrs.Gateway+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	var jar []string
	for k, v := range c.cookies {
		jar = append(jar, k+"="+v)
	}
	if len(jar) > 0 {
		req.Header.Set("Cookie", strings.Join(jar, "; "))
	}
	if method != http.MethodGet && c.cookies["fraise_csrf"] != "" {
		req.Header.Set("X-CSRF-Token", c.cookies["fraise_csrf"])
	}
	resp, err := c.s.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// json sends a request and decodes its JSON answer, failing t unless the
// status is want.
func (c *consoleClient) json(t *testing.T, method, path, body string, want int, v any) {
	t.Helper()
	status, _, b := c.do(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s: got %d %s, want %d", method, path, status, b, want)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(b), v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// TestConsolePlaygroundFlow is the playground's story through the real
// ingress, as the browser tests drive it: a viewer's mutation is refused;
// the security engineer finds it in the decision log, opens it in the
// playground, changes a draft so that it is allowed, sees the replay list
// that change, and the live policy still refuses the mutation.
func TestConsolePlaygroundFlow(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	s := stack.StartWith(t, stack.Options{Demo: true, PerTenant: 1000, Env: slowMachineEnv})
	s.MustServe(t, s.Token(t, "11111111-1111-4111-8111-111111111111", "alice", "admin"))

	// The viewer's mutation, from the explorer: cookie and CSRF token.
	victor := login(t, s, "victor")
	mutation := `{"query":"mutation { createPost(input: {title: \"from the console\", authorId: \"a0000000-0000-4000-8000-00000000000a\"}) { __typename } }"}`
	if status, _, b := victor.do(t, "POST", "/graphql", mutation); status != http.StatusForbidden {
		t.Fatalf("viewer's mutation: got %d %s, want 403", status, b)
	}
	var me struct{ Screens []string }
	victor.json(t, "GET", "/console/api/me", "", 200, &me)
	if strings.Join(me.Screens, ",") != "decisions,explorer,quotas" {
		t.Errorf("viewer's screens: got %v", me.Screens)
	}

	// The security engineer finds it in the decision log (written in
	// batches, about a second later).
	sam := login(t, s, "sam")
	type decision struct {
		ID, Subject, Decision, Reason string
		Input                         json.RawMessage
	}
	var refused decision
	await.Until(t, 30*time.Second, "the refused mutation in the decision log", func() bool {
		var ds []decision
		sam.json(t, "GET", "/console/api/decisions?decision=deny&subject=victor", "", 200, &ds)
		for _, d := range ds {
			if strings.Contains(d.Reason, "mutation") && len(d.Input) > 4 {
				refused = d
				return true
			}
		}
		return false
	})

	// Open it in the playground against a draft that lets viewers mutate.
	var live struct {
		Files []struct{ Path, Content string }
	}
	sam.json(t, "GET", "/console/api/policies", "", 200, &live)
	var files []map[string]string
	changed := false
	for _, f := range live.Files {
		c := f.Content
		if f.Path == "authz.rego" {
			c = strings.Replace(c, "decision := deny(401,", "decision := {\"allow\": true, \"reason\": \"draft: viewers may post\"} if {\n\t\"viewer\" in principal_roles\n\t\"createPost\" in input.graphql.root_fields\n} else := deny(401,", 1)
			changed = c != f.Content
		}
		if !strings.HasSuffix(f.Path, "_test.rego") {
			files = append(files, map[string]string{"path": f.Path, "content": c})
		}
	}
	if !changed {
		t.Fatal("authz.rego no longer starts its decision with deny(401: update the test's draft")
	}
	body := func(v map[string]any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var ev struct {
		Draft, Live struct{ Allow bool }
		Changed     bool
	}
	sam.json(t, "POST", "/console/api/policies/evaluate", body(map[string]any{"files": files, "input": refused.Input}), 200, &ev)
	if !ev.Draft.Allow || ev.Live.Allow || !ev.Changed {
		t.Errorf("evaluate the refused decision: got %+v, want the draft to allow it and the live policy to refuse it", ev)
	}
	var rp struct {
		Replayed int
		Changed  []struct{ Decision struct{ ID string } }
	}
	sam.json(t, "POST", "/console/api/policies/replay", body(map[string]any{"files": files, "limit": 100}), 200, &rp)
	found := false
	for _, c := range rp.Changed {
		found = found || c.Decision.ID == refused.ID
	}
	if rp.Replayed == 0 || !found {
		t.Errorf("replay: got %+v, want the refused mutation %s among the changes", rp, refused.ID)
	}
	var ex struct{ Diff string }
	sam.json(t, "POST", "/console/api/policies/export", body(map[string]any{"files": files}), 200, &ex)
	if !strings.Contains(ex.Diff, "+++ b/authz.rego") {
		t.Errorf("export: got %q, want a diff of authz.rego", ex.Diff)
	}

	// The live policy still refuses it: nothing was shipped.
	if status, _, b := victor.do(t, "POST", "/graphql", mutation); status != http.StatusForbidden {
		t.Errorf("viewer's mutation after the playground: got %d %s, want 403", status, b)
	}
	// And the viewer may not do what the security engineer did.
	if status, _, _ := victor.do(t, "POST", "/console/api/policies/evaluate", body(map[string]any{"files": files, "input": refused.Input})); status != http.StatusForbidden {
		t.Errorf("viewer evaluating: got %d, want 403", status)
	}
	// Logging out clears the cookies.
	if status, hdr, _ := sam.do(t, "POST", "/console/api/logout", ""); status != http.StatusNoContent || len((&http.Response{Header: hdr}).Cookies()) != 2 {
		t.Errorf("logout: got %d %v, want 204 clearing both cookies", status, hdr["Set-Cookie"])
	}
}
