package flight_test

import (
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

func mustSplitCatalog(tb testing.TB) *flight.Catalog {
	tb.Helper()
	c, err := flight.NewCatalog([]flight.Dataset{
		{Name: "orders", View: "v_orders", Endpoints: 4, Columns: []flight.Column{
			{Name: "id", Type: mustType(tb, "int8")}, {Name: "region", Type: mustType(tb, "text")}}},
		{Name: "users", View: "v_users", Endpoints: 2, PartitionKey: "uid", Columns: []flight.Column{
			{Name: "uid", Type: mustType(tb, "uuid")}, {Name: "email", Type: mustType(tb, "text"),
				Protection: core.Protection{Mask: core.MaskEmail}}}},
		{Name: "secret", View: "v_secret", Endpoints: 2, PartitionKey: "k", Columns: []flight.Column{
			{Name: "k", Type: mustType(tb, "int4"), Protection: core.Protection{Auth: []string{"read:k"}}}}},
		{Name: "one", View: "v_one", Columns: []flight.Column{{Name: "id", Type: mustType(tb, "int8")}}},
	}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestSplit: an export splits into disjoint ranges of its key that cover
// every row once (NULL keys in the first), each compiled with its range
// as parameters, and only where reading the parts side by side gives
// what one stream would.
func TestSplit(t *testing.T) {
	c := mustSplitCatalog(t)
	snap := flight.Snapshot{ID: "00000003-0000001B-1", Min: "1", Max: "1000"}
	d, _ := c.Lookup(analyst, "orders")
	q := flight.Query{Dataset: "orders", Where: &flight.Expr{Column: "region", Op: flight.OpEq, Values: []string{"EU"}}}
	key, ok := flight.SplitKey(d, q, analyst)
	if !ok {
		t.Fatal("orders cannot be split")
	}
	parts := flight.Split(q, key, snap, 4)
	wantSQL := []string{
		`where "region" = $1::text::text and ("id" < $2::text::int8 or "id" is null)`,
		`where "region" = $1::text::text and "id" >= $2::text::int8 and "id" < $3::text::int8`,
		`where "region" = $1::text::text and "id" >= $2::text::int8 and "id" < $3::text::int8`,
		`where "region" = $1::text::text and "id" >= $2::text::int8`,
	}
	wantArgs := []string{"[EU 251]", "[EU 251 501]", "[EU 501 751]", "[EU 751]"}
	if len(parts) != len(wantSQL) {
		t.Fatalf("got %d parts, want %d", len(parts), len(wantSQL))
	}
	for i, pq := range parts {
		st, err := flight.Compile(d, pq, analyst)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(st.SQL, wantSQL[i]) || fmtArgs(st.Args) != wantArgs[i] {
			t.Errorf("part %d: got %s %s, want ...%s %s", i, st.SQL, fmtArgs(st.Args), wantSQL[i], wantArgs[i])
		}
		if st.Snapshot != snap.ID || st.Part != i || st.Parts != 4 {
			t.Errorf("part %d: got snapshot %q part %d of %d", i, st.Snapshot, st.Part, st.Parts)
		}
	}

	t.Run("a span narrower than the parts", func(t *testing.T) {
		if got := flight.Split(q, key, flight.Snapshot{ID: snap.ID, Min: "7", Max: "8"}, 4); len(got) != 2 {
			t.Errorf("got %d parts, want 2", len(got))
		}
		for _, s := range []flight.Snapshot{{ID: snap.ID, Min: "7", Max: "7"}, {ID: snap.ID}} {
			if got := flight.Split(q, key, s, 4); got != nil {
				t.Errorf("%+v: got %d parts, want none", s, len(got))
			}
		}
	})
	t.Run("uuids split the whole space", func(t *testing.T) {
		u, _ := c.Lookup(analyst, "users")
		key, ok := flight.SplitKey(u, flight.Query{Dataset: "users"}, analyst)
		if !ok {
			t.Fatal("users cannot be split")
		}
		parts := flight.Split(flight.Query{Dataset: "users"}, key, flight.Snapshot{ID: snap.ID, Min: "x", Max: "y"}, 2)
		if len(parts) != 2 || *parts[0].Part.Hi != "80000000-0000-0000-0000-000000000000" || *parts[1].Part.Lo != *parts[0].Part.Hi {
			t.Errorf("got %+v", parts)
		}
	})
	t.Run("not split", func(t *testing.T) {
		limit := int64(5)
		reader := analyst
		reader.Scopes = []string{"read:k"}
		for _, tt := range []struct {
			name    string
			dataset string
			q       flight.Query
			as      core.Principal
		}{
			{"one endpoint", "one", flight.Query{Dataset: "one"}, analyst},
			{"a limit", "orders", flight.Query{Dataset: "orders", Limit: &limit}, analyst},
			{"ordered otherwise", "orders", flight.Query{Dataset: "orders", Order: []flight.Order{{Column: "region"}}}, analyst},
			{"ordered by the key descending", "orders", flight.Query{Dataset: "orders", Order: []flight.Order{{Column: "id", Desc: true}}}, analyst},
			{"a key the caller may not filter by", "secret", flight.Query{Dataset: "secret"}, analyst},
		} {
			t.Run(tt.name, func(t *testing.T) {
				d, _ := c.Lookup(tt.as, tt.dataset)
				if _, ok := flight.SplitKey(d, tt.q, tt.as); ok {
					t.Error("got split, want one stream")
				}
			})
		}
		d, _ := c.Lookup(reader, "secret")
		if _, ok := flight.SplitKey(d, flight.Query{Dataset: "secret"}, reader); !ok {
			t.Error("with the key's scope: got one stream, want split")
		}
		if _, ok := flight.SplitKey(d, flight.Query{Dataset: "secret", Order: []flight.Order{{Column: "k"}}}, reader); !ok {
			t.Error("ordered by the key: got one stream, want split")
		}
	})
	t.Run("declarations", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			ds   flight.Dataset
		}{
			{"no id column", flight.Dataset{Name: "a", View: "v", Endpoints: 2, Columns: []flight.Column{{Name: "k", Type: mustType(t, "int8")}}}},
			{"a text key", flight.Dataset{Name: "a", View: "v", Endpoints: 2, PartitionKey: "t", Columns: []flight.Column{{Name: "t", Type: mustType(t, "text")}}}},
			{"an array key", flight.Dataset{Name: "a", View: "v", Endpoints: 2, PartitionKey: "t", Columns: []flight.Column{{Name: "t", Type: mustType(t, "int8[]")}}}},
			{"negative", flight.Dataset{Name: "a", View: "v", Endpoints: -1, Columns: []flight.Column{{Name: "id", Type: mustType(t, "int8")}}}},
			{"a key without endpoints", flight.Dataset{Name: "a", View: "v", PartitionKey: "id", Columns: []flight.Column{{Name: "id", Type: mustType(t, "int8")}}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := flight.NewCatalog([]flight.Dataset{tt.ds}, nil); err == nil {
					t.Error("got no error, want the declaration refused")
				}
			})
		}
	})
}
