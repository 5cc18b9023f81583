package extauthz_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz"
)

// TestCheckPersistedStore resolves hash-only requests from the store the
// core registers documents in, on the harness's PostgreSQL.
func TestCheckPersistedStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg, db := postgrestest.New(t)
	appDB, err := postgres.Open(ctx, pg.URL("fraise_app", db), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(appDB.Close)
	// The core's store and extauthz's are separate, as in separate processes.
	core1 := postgres.NewPersistedDocuments(appDB, postgres.PersistedOptions{})
	f := mustFixture(t, func(o *extauthz.Options) {
		o.Persisted = extauthz.PersistedStore{Docs: postgres.NewPersistedDocuments(appDB, postgres.PersistedOptions{})}
	})
	const tenantB = "5d1f0e2a-8c3b-4a7e-9f60-2b4c6d8e0a13"
	const doc = "mutation { createUser { id } }"
	body := `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + core.DocumentHash(doc) + `"}}}`
	check := func(token string) *denial {
		t.Helper()
		resp := mustCheck(t, f.client, httpRequest("Bearer "+token, "POST", "/graphql", body))
		if resp.GetOkResponse() != nil {
			return nil
		}
		d := mustDenial(t, resp)
		return &d
	}

	if d := check(f.token(t, "operator")); d == nil || d.status != 400 {
		t.Fatalf("before registration: got %+v, want 400 PERSISTED_QUERY_NOT_FOUND", d)
	}
	if err := core1.Put(ctx, tenantA, core.DocumentHash(doc), doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		token      string
		wantStatus int // 0: allowed
	}{
		{name: "operator runs the registered mutation", token: f.token(t, "operator")},
		{name: "viewer is refused the registered mutation", token: f.token(t, "viewer"), wantStatus: 403},
		{name: "another tenant does not find it", token: f.is.Sign(t, f.is.Claims("carol", tenantB, "admin")), wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := check(tt.token)
			switch {
			case tt.wantStatus == 0 && d != nil:
				t.Fatalf("got denial %+v, want allowed", *d)
			case tt.wantStatus != 0 && (d == nil || d.status != tt.wantStatus):
				t.Fatalf("got %+v, want status %d", d, tt.wantStatus)
			}
		})
	}
}

// corrupted is a store whose every document is another one's.
type corrupted struct{}

func (corrupted) Get(context.Context, string, string) (string, bool, error) {
	return "query { users { id } }", true, nil
}
func (corrupted) Put(context.Context, string, string, string) error { return nil }

func TestCheckPersistedStoreRefusesADocumentUnderAnotherHash(t *testing.T) {
	t.Parallel()
	f := mustFixture(t, func(o *extauthz.Options) { o.Persisted = extauthz.PersistedStore{Docs: corrupted{}} })
	body := `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + core.DocumentHash("mutation { deleteEverything }") + `"}}}`
	_, err := f.client.Check(context.Background(), httpRequest("Bearer "+f.token(t, "admin"), "POST", "/graphql", body))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE (fail closed)", err)
	}
}
