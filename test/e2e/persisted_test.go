package e2e_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// apq is a request with the persisted-query extension: the hash of doc,
// and doc itself unless hashOnly.
func apq(doc string, hashOnly bool, vars map[string]any) map[string]any {
	r := map[string]any{"extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": core.DocumentHash(doc)}}}
	if !hashOnly {
		r["query"] = doc
	}
	if vars != nil {
		r["variables"] = vars
	}
	return r
}

func wantCode(tb testing.TB, status int, g stack.Response, wantStatus int, code string) {
	tb.Helper()
	if status != wantStatus || len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != code {
		tb.Fatalf("got status %d errors %+v, want %d with extensions.code %s", status, g.Errors, wantStatus, code)
	}
	if len(g.Data) > 0 && string(g.Data) != "null" {
		tb.Fatalf("got data %s, want none", g.Data)
	}
}

func wantUsers(tb testing.TB, status int, g stack.Response, want ...string) {
	tb.Helper()
	if status != http.StatusOK || len(g.Errors) > 0 {
		tb.Fatalf("got status %d errors %+v, want 200", status, g.Errors)
	}
	if got := stack.UserNames(tb, g); !slices.Equal(got, want) {
		tb.Fatalf("got users %v, want %v", got, want)
	}
}

const createPostDoc = `mutation($in: CreatePostInput!) { createPost(input: $in) { __typename } }`

func TestAutomaticPersistedQueriesThroughTheGateway(t *testing.T) {
	t.Parallel()
	s := stack.Start(t)
	const q = "{ users { id name } }"
	admin := s.Token(t, demo.TenantAcme, "alice", "admin")
	viewer := s.Token(t, demo.TenantAcme, "bob", "viewer")
	globex := s.Token(t, demo.TenantGlobex, "carol", "admin")
	s.MustServe(t, admin)

	t.Run("a hash nobody registered is not found", func(t *testing.T) {
		status, g := s.GraphQL(t, admin, apq(q, true, nil))
		wantCode(t, status, g, http.StatusBadRequest, "PERSISTED_QUERY_NOT_FOUND")
	})
	t.Run("hash and query run and register", func(t *testing.T) {
		status, g := s.GraphQL(t, admin, apq(q, false, nil))
		wantUsers(t, status, g, "Alice", "Bob")
	})
	t.Run("the hash alone then runs through the gateway", func(t *testing.T) {
		// extauthz resolved the hash (the policy decides on the
		// operation) and the core ran the registered document.
		status, g := s.GraphQL(t, viewer, apq(q, true, nil))
		wantUsers(t, status, g, "Alice", "Bob")
	})

	in := map[string]any{"in": map[string]any{"title": "Persisted", "authorId": "a0000000-0000-4000-8000-00000000000a"}}
	t.Run("an admin registers a mutation and runs it by hash", func(t *testing.T) {
		status, g := s.GraphQL(t, admin, apq(createPostDoc, false, in))
		if status != http.StatusOK || len(g.Errors) > 0 || !bytes.Contains(g.Data, []byte("CreatePostSuccess")) {
			t.Fatalf("register: got status %d data %s errors %+v", status, g.Data, g.Errors)
		}
		status, g = s.GraphQL(t, admin, apq(createPostDoc, true, in))
		if status != http.StatusOK || len(g.Errors) > 0 || !bytes.Contains(g.Data, []byte("CreatePostSuccess")) {
			t.Fatalf("by hash: got status %d data %s errors %+v", status, g.Data, g.Errors)
		}
	})
	t.Run("a viewer sending the mutation's hash is refused by the policy", func(t *testing.T) {
		status, g := s.GraphQL(t, viewer, apq(createPostDoc, true, in))
		wantCode(t, status, g, http.StatusForbidden, "FORBIDDEN")
	})

	t.Run("another tenant cannot tell the hash was registered", func(t *testing.T) {
		status, g := s.GraphQL(t, globex, apq(q, true, nil))
		wantCode(t, status, g, http.StatusBadRequest, "PERSISTED_QUERY_NOT_FOUND")
		// The answer is the one for a hash nobody ever registered.
		neverStatus, never := s.GraphQL(t, globex, apq("{ users { name } }", true, nil))
		if neverStatus != status || !reflect.DeepEqual(never.Errors, g.Errors) {
			t.Fatalf("registered elsewhere: %d %+v; never registered: %d %+v; want the same", status, g.Errors, neverStatus, never.Errors)
		}
		status, g = s.GraphQL(t, globex, apq(createPostDoc, true, in))
		wantCode(t, status, g, http.StatusBadRequest, "PERSISTED_QUERY_NOT_FOUND")
	})
	t.Run("another tenant registering the same text reads its own rows", func(t *testing.T) {
		status, g := s.GraphQL(t, globex, apq(q, false, nil))
		wantUsers(t, status, g, "Carol", "Dave")
		status, g = s.GraphQL(t, globex, apq(q, true, nil))
		wantUsers(t, status, g, "Carol", "Dave")
	})
}

func TestTrustedDocumentsThroughTheGateway(t *testing.T) {
	t.Parallel()
	const trusted = "{ users { id name } }"
	manifest, _ := json.Marshal(map[string]string{core.DocumentHash(trusted): trusted})
	path := filepath.Join(t.TempDir(), "trusted.json")
	if err := os.WriteFile(path, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	s := stack.StartWith(t, stack.Options{Env: map[string]string{"FRAISE_SERVER_TRUSTED_DOCUMENTS": path}})
	admin := s.Token(t, demo.TenantAcme, "alice", "admin")
	globex := s.Token(t, demo.TenantGlobex, "carol", "viewer")
	s.MustServe(t, admin)
	const other = "{ posts { id title } }"

	t.Run("a trusted document runs by hash alone for every tenant", func(t *testing.T) {
		status, g := s.GraphQL(t, admin, apq(trusted, true, nil))
		wantUsers(t, status, g, "Alice", "Bob")
		status, g = s.GraphQL(t, globex, apq(trusted, true, nil))
		wantUsers(t, status, g, "Carol", "Dave")
	})
	t.Run("a trusted document runs by text", func(t *testing.T) {
		status, g := s.GraphQL(t, admin, map[string]any{"query": trusted})
		wantUsers(t, status, g, "Alice", "Bob")
	})
	t.Run("an unregistered operation is refused", func(t *testing.T) {
		status, g := s.GraphQL(t, admin, map[string]any{"query": other})
		if len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "OPERATION_NOT_TRUSTED" || len(g.Data) > 0 && string(g.Data) != "null" {
			t.Fatalf("got status %d data %s errors %+v, want OPERATION_NOT_TRUSTED", status, g.Data, g.Errors)
		}
	})
	t.Run("an unregistered operation cannot register itself", func(t *testing.T) {
		status, g := s.GraphQL(t, admin, apq(other, false, nil))
		if len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "OPERATION_NOT_TRUSTED" {
			t.Fatalf("got status %d errors %+v, want OPERATION_NOT_TRUSTED", status, g.Errors)
		}
		status, g = s.GraphQL(t, admin, apq(other, true, nil))
		wantCode(t, status, g, http.StatusBadRequest, "PERSISTED_QUERY_NOT_FOUND")
	})
}

// TestPersistedHashCaseTwinThroughTheGateway is security #13, defect 1: a
// viewer's body naming a registered mutation's hash as sha256Hash and a
// registered query's as Sha256Hash was decided by extauthz (encoding/json,
// case-insensitive, last match) as the query and run by the core (a map,
// exact name) as the mutation. Both now read the body with one decoder,
// which refuses it.
func TestPersistedHashCaseTwinThroughTheGateway(t *testing.T) {
	t.Parallel()
	s := stack.Start(t)
	const q = "{ users { id name } }"
	admin := s.Token(t, demo.TenantAcme, "alice", "admin")
	viewer := s.Token(t, demo.TenantAcme, "bob", "viewer")
	s.MustServe(t, admin)
	in := map[string]any{"in": map[string]any{"title": "Twin", "authorId": "a0000000-0000-4000-8000-00000000000a"}}
	for _, r := range []map[string]any{apq(q, false, nil), apq(createPostDoc, false, in)} {
		if status, g := s.GraphQL(t, admin, r); status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("registering: got status %d errors %+v", status, g.Errors)
		}
	}
	vars, _ := json.Marshal(in)
	body := `{"variables":` + string(vars) + `,"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` +
		core.DocumentHash(createPostDoc) + `","Sha256Hash":"` + core.DocumentHash(q) + `"}}}`
	status, g := s.GraphQLRaw(t, viewer, body)
	if bytes.Contains(g.Data, []byte("CreatePost")) {
		t.Fatalf("a viewer ran the mutation: got status %d data %s", status, g.Data)
	}
	wantCode(t, status, g, http.StatusBadRequest, "INVALID")
}
