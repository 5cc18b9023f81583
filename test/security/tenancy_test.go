package security_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/test/stack"
)

var tenancyAttacks = []attack{
	{
		name: "graphql-other-tenant-by-id", class: classTenancy,
		does: "Acme's admin, holding every scope, asks for Globex's user and post by id",
		want: "null for both: row-level security hides the rows; no Globex value in the answer",
		run: func(t *testing.T, e *env) string {
			tok := e.token(t, acme, "alice", "admin", "read:User.email", "read:Post.internalNote")
			q := fmt.Sprintf(`{ user(id: %q) { id name email } post(id: %q) { id title internalNote } }`, carolID, globexPost)
			status, g := e.query(t, tok, q)
			if status != http.StatusOK || len(g.Errors) > 0 || string(g.Data) != `{"user":null,"post":null}` {
				t.Fatalf("got %d %s %+v, want 200 and both null", status, g.Data, g.Errors)
			}
			return "confined: null for both"
		},
	},
	{
		name: "graphql-other-tenant-lists", class: classTenancy,
		does: "Acme's admin lists every user and post",
		want: "Acme's rows only: no Globex name, title or note",
		run: func(t *testing.T, e *env) string {
			tok := e.token(t, acme, "alice", "admin", "read:User.email", "read:Post.internalNote")
			status, g := e.query(t, tok, "{ users { id name email } posts { id title internalNote author { name } } }")
			if status != http.StatusOK || len(g.Errors) > 0 || !strings.Contains(string(g.Data), "Alice") {
				t.Fatalf("got %d %s %+v, want Acme's rows", status, g.Data, g.Errors)
			}
			for _, v := range []string{"Carol", "Dave", "globex", "Globex quarterly", globexNote} {
				if strings.Contains(string(g.Data), v) {
					t.Errorf("Globex's %q in Acme's answer: %s", v, g.Data)
				}
			}
			return "confined: Acme's rows only"
		},
	},
	{
		name: "graphql-write-into-other-tenant", class: classTenancy,
		does: "Acme's admin creates a post whose author is Globex's Carol",
		want: "no post written for Carol in either tenant",
		run: func(t *testing.T, e *env) string {
			byCarol := func() int { return e.count(t, "SELECT count(*) FROM public.posts WHERE author_id = $1", carolID) }
			before := byCarol()
			status, g := e.s.GraphQL(t, e.token(t, acme, "alice", "admin"), map[string]any{
				"query":     `mutation($in: CreatePostInput!) { createPost(input: $in) { __typename ... on CreatePostError { errorClass } } }`,
				"variables": map[string]any{"in": map[string]any{"title": "into Globex", "authorId": carolID}}})
			if n := byCarol(); n != before {
				t.Fatalf("Carol has %d posts, had %d: got %d %s", n, before, status, g.Data)
			}
			if strings.Contains(string(g.Data), "CreatePostSuccess") {
				t.Fatalf("got %s, want the post refused", g.Data)
			}
			return fmt.Sprintf("refused: %s %s, nothing written", g.Data, g.Code())
		},
	},
	{
		name: "apq-other-tenant-hash", class: classTenancy,
		does: "Globex's admin sends only the hash of a document Acme registered",
		want: "400 PERSISTED_QUERY_NOT_FOUND, the same answer as for a hash nobody registered",
		run: func(t *testing.T, e *env) string {
			doc := "{ users { id name createdAt } }"
			r := func(d string, hashOnly bool) map[string]any {
				m := map[string]any{"extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": core.DocumentHash(d)}}}
				if !hashOnly {
					m["query"] = d
				}
				return m
			}
			if status, g := e.s.GraphQL(t, e.token(t, acme, "alice", "admin"), r(doc, false)); status != http.StatusOK {
				t.Fatalf("registering: %d %+v", status, g.Errors)
			}
			g2 := e.token(t, globex, "carol", "admin")
			before := e.counts(t)
			status, g := e.s.GraphQL(t, g2, r(doc, true))
			got := e.refused(t, before, status, g, http.StatusBadRequest, "PERSISTED_QUERY_NOT_FOUND", byAuthz)
			nstatus, never := e.s.GraphQL(t, g2, r("{ users { id createdAt name } }", true))
			if nstatus != status || !reflect.DeepEqual(never.Errors, g.Errors) {
				t.Errorf("registered elsewhere: %d %+v; never registered: %d %+v; want the same", status, g.Errors, nstatus, never.Errors)
			}
			return got + ", as for a hash never registered"
		},
	},
	{
		name: "flight-ticket-other-tenant", class: classTenancy,
		does: "redeems, as Globex's analyst, a Flight ticket Acme's analyst obtained for people.users",
		want: "refused; no row",
		run: func(t *testing.T, e *env) string {
			c := e.s.FlightClient(t, e.s.Addrs.Gateway)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			info, err := c.GetFlightInfo(stack.Bearer(ctx, e.token(t, acme, "ann", "analyst")), usersDescriptor())
			if err != nil {
				t.Fatal(err)
			}
			recs, err := readTicket(stack.Bearer(ctx, e.token(t, globex, "gus", "analyst")), c, info.Endpoint[0].Ticket)
			rows := releaseRows(recs)
			if err == nil || rows > 0 {
				t.Fatalf("got %d rows, %v: want the ticket refused", rows, err)
			}
			if code := codeOf(err); code != codes.PermissionDenied && code != codes.Unauthenticated && code != codes.NotFound {
				t.Fatalf("got %v, want PermissionDenied, Unauthenticated or NotFound", err)
			}
			return "refused " + codeOf(err).String() + ", no row"
		},
	},
	{
		name: "flight-ticket-tampered", class: classTenancy,
		does: "flips a bit of a ticket Acme's analyst obtained, and redeems it",
		want: "UNAUTHENTICATED: tickets are signed",
		run: func(t *testing.T, e *env) string {
			c := e.s.FlightClient(t, e.s.Addrs.Gateway)
			ctx, cancel := context.WithTimeout(stack.Bearer(context.Background(), e.token(t, acme, "ann", "analyst")), 30*time.Second)
			defer cancel()
			info, err := c.GetFlightInfo(ctx, usersDescriptor())
			if err != nil {
				t.Fatal(err)
			}
			tk := info.Endpoint[0].Ticket
			tk.Ticket[len(tk.Ticket)/2] ^= 0x01
			recs, err := readTicket(ctx, c, tk)
			if rows := releaseRows(recs); rows > 0 {
				t.Fatalf("got %d rows from a tampered ticket", rows)
			}
			return wantGRPCCode(t, err, codes.Unauthenticated)
		},
	},
	{
		name: "observer-rules-other-tenant-list", class: classTenancy,
		does: "Globex's admin lists observer rules after Acme's operator created one",
		want: "Acme's rule is not among them",
		run: func(t *testing.T, e *env) string {
			id := e.createRule(t, "listed-"+randomName(), "https://hooks.example.com/acme")
			status, g := e.s.GraphQL(t, e.token(t, globex, "gina", "admin"), map[string]any{"query": `{ observerRules { id name actions { url } } }`})
			if status != http.StatusOK || len(g.Errors) > 0 {
				t.Fatalf("got %d %+v", status, g.Errors)
			}
			if strings.Contains(string(g.Data), id) || strings.Contains(string(g.Data), "hooks.example.com/acme") {
				t.Fatalf("Globex sees Acme's rule: %s", g.Data)
			}
			return "confined: Globex sees none of Acme's rules"
		},
	},
	{
		name: "observer-rules-other-tenant-update", class: classTenancy,
		does: "Globex's admin updates Acme's rule by id (its condition)",
		want: "not_found, and the rule unchanged in the database",
		run: func(t *testing.T, e *env) string {
			id := e.createRule(t, "updated-"+randomName(), "https://hooks.example.com/acme")
			status, g := e.s.GraphQL(t, e.token(t, globex, "gina", "admin"), map[string]any{
				"query":     `mutation($id: ID!) { updateObserverRule(id: $id, input: {condition: "true"}) { succeeded status rule { id } } }`,
				"variables": map[string]any{"id": id}})
			return e.ruleUntouched(t, id, status, g, "updateObserverRule")
		},
	},
	{
		name: "observer-rules-other-tenant-delete", class: classTenancy,
		does: "Globex's admin deletes Acme's rule by id",
		want: "not_found, and the rule still in the database",
		run: func(t *testing.T, e *env) string {
			id := e.createRule(t, "deleted-"+randomName(), "https://hooks.example.com/acme")
			status, g := e.s.GraphQL(t, e.token(t, globex, "gina", "admin"), map[string]any{
				"query":     `mutation($id: ID!) { deleteObserverRule(id: $id) { succeeded status rule { id } } }`,
				"variables": map[string]any{"id": id}})
			return e.ruleUntouched(t, id, status, g, "deleteObserverRule")
		},
	},
}

// ruleUntouched checks the answer to another tenant's change of rule id is
// not_found and the rule is as created.
func (e *env) ruleUntouched(t *testing.T, id string, status int, g stack.Response, field string) string {
	t.Helper()
	var data map[string]struct {
		Succeeded bool
		Status    string
		Rule      *struct{ ID string }
	}
	_ = json.Unmarshal(g.Data, &data)
	if status != http.StatusOK || len(g.Errors) > 0 || data[field].Status != "not_found" || data[field].Succeeded || data[field].Rule != nil {
		t.Errorf("got %d %s %+v, want not_found", status, g.Data, g.Errors)
	}
	if n := e.count(t, "SELECT count(*) FROM fraise.observer_rules WHERE id = $1 AND tenant_id = $2 AND condition = '' AND version = 1", id, acme); n != 1 {
		t.Errorf("Acme's rule changed or went: %d rows as created, want 1", n)
	}
	return "refused: not_found, the rule unchanged"
}
