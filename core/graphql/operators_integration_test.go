package graphql_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/test/harness"
)

// operatorsDB is a table of five samples with one column per operator
// family, and v_sample, the same rows as (id, data). ltree and pgvector
// columns are of those types where the extensions are installed (make
// deps installs pgvector where Debian packages it), else text.
type operatorsDB struct {
	engine         *graphql.Engine
	ltree, vector  bool
	ltreeWhy, vWhy string
}

func mustOperatorsDB(tb testing.TB) *operatorsDB {
	tb.Helper()
	harness.SkipShort(tb)
	ctx := context.Background()
	pg, name := harness.NewDatabase(tb)
	if err := postgres.Migrate(ctx, pg.AdminURL(name), postgres.MigrateOptions{}); err != nil {
		tb.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.AdminURL(name))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	out := &operatorsDB{}
	ext := func(name string) (bool, string) {
		if _, err := conn.Exec(ctx, "create extension if not exists "+name); err != nil {
			return false, fmt.Sprintf("the %s extension is not installed (%v): make deps installs it where Debian packages it", name, err)
		}
		return true, ""
	}
	out.ltree, out.ltreeWhy = ext("ltree")
	out.vector, out.vWhy = ext("vector")
	pathType, vecType := "text", "text"
	if out.ltree {
		pathType = "ltree"
	}
	if out.vector {
		vecType = "vector(3)"
	}
	sql := `create table tb_sample (
		id uuid primary key, seq int not null, name text not null, body text, tags text[] not null, scores int[] not null,
		rating int, attrs jsonb, ip inet, net cidr, path ` + pathType + `, embedding ` + vecType + `);
	insert into tb_sample values
		('c0000000-0000-4000-8000-000000000001', 1, 'Alpha Engine', 'The quick brown fox jumps', '{red,blue}', '{1,2,3}', 5, '{"color": "red", "size": 3}', '10.1.2.3', '10.0.0.0/8', 'top.science.physics', '[1,0,0]'),
		('c0000000-0000-4000-8000-000000000002', 2, 'beta motor', 'Lazy dogs sleep all day', '{blue}', '{4}', 3, '{"color": "blue"}', '100.64.1.1', '8.8.8.0/24', 'top.science', '[0,1,0]'),
		('c0000000-0000-4000-8000-000000000003', 3, 'Gamma_Ray 100%', 'foxes and dogs', '{}', '{}', null, null, '192.168.1.10', null, 'top.art', '[0,0,1]'),
		('c0000000-0000-4000-8000-000000000004', 4, 'delta', null, '{green,red,blue}', '{1,5}', 1, '{"color": "green", "list": ["x"]}', '127.0.0.1', null, 'top.science.chemistry.organic', '[1,1,0]'),
		('c0000000-0000-4000-8000-000000000005', 5, 'Epsilon', 'WEB search engines rock', '{red}', '{2}', 4, '{"size": 10}', '2001:db8::1', null, 'top', '[0.5,0.5,0]');
	create view v_sample as select s.id, jsonb_build_object('id', s.id, 'seq', s.seq, 'name', s.name, 'body', s.body, 'tags', s.tags,
		'scores', s.scores, 'rating', s.rating, 'attrs', s.attrs, 'ip', s.ip::text, 'net', s.net::text, 'path', s.path::text,
		'embedding', s.embedding::text::jsonb) as data from tb_sample s;
	grant select on tb_sample, v_sample to fraise_app`
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatal(err)
	}
	d, err := postgres.Open(ctx, pg.URL("fraise_app", name), postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	s := mustSchema(tb, mustFile(tb, "testdata/operators/schema.graphql"))
	if err := s.Check(ctx, d); err != nil {
		tb.Fatal(err)
	}
	out.engine = graphql.NewEngine(s, d, graphql.Options{Batcher: d, Writer: d})
	return out
}

// TestOperators runs every filter operator of FraiseQL's table against
// real PostgreSQL, on JSON paths (samples, read from v_sample's data) and
// on native columns (plains, read from the table), which must agree.
func TestOperators(t *testing.T) {
	db := mustOperatorsDB(t)
	tests := []struct {
		name, where string
		want        []int
		needs       string // "ltree" or "vector": skipped without the extension
		order       string
	}{
		{name: "eq", where: `{name: {eq: "delta"}}`, want: []int{4}},
		{name: "neq", where: `{rating: {neq: 5}}`, want: []int{2, 4, 5}},
		{name: "gt", where: `{rating: {gt: 3}}`, want: []int{1, 5}},
		{name: "gte", where: `{rating: {gte: 4}}`, want: []int{1, 5}},
		{name: "lt", where: `{rating: {lt: 3}}`, want: []int{4}},
		{name: "lte", where: `{rating: {lte: 3}}`, want: []int{2, 4}},
		{name: "in", where: `{name: {in: ["delta", "Epsilon"]}}`, want: []int{4, 5}},
		{name: "nin", where: `{rating: {nin: [5, 3]}}`, want: []int{3, 4, 5}},
		{name: "isnull true", where: `{rating: {isnull: true}}`, want: []int{3}},
		{name: "isnull false", where: `{rating: {isnull: false}}`, want: []int{1, 2, 4, 5}},
		{name: "contains, literally", where: `{name: {contains: "100%"}}`, want: []int{3}},
		{name: "icontains", where: `{name: {icontains: "ENGINE"}}`, want: []int{1}},
		{name: "startswith", where: `{name: {startswith: "be"}}`, want: []int{2}},
		{name: "istartswith", where: `{name: {istartswith: "BE"}}`, want: []int{2}},
		{name: "endswith", where: `{name: {endswith: "ine"}}`, want: []int{1}},
		{name: "iendswith", where: `{name: {iendswith: "LON"}}`, want: []int{5}},
		{name: "like", where: `{name: {like: "%ta"}}`, want: []int{4}},
		{name: "ilike", where: `{name: {ilike: "%TA"}}`, want: []int{4}},
		{name: "nlike", where: `{name: {nlike: "%a%"}}`, want: []int{5}},
		{name: "nilike", where: `{name: {nilike: "%A%"}}`, want: []int{5}},
		{name: "regex", where: `{name: {regex: "^[A-Z][a-z]+$"}}`, want: []int{5}},
		{name: "iregex", where: `{name: {iregex: "^DELTA$"}}`, want: []int{4}},
		{name: "nregex", where: `{name: {nregex: " "}}`, want: []int{4, 5}},
		{name: "niregex", where: `{name: {niregex: "A"}}`, want: []int{5}},
		{name: "matches", where: `{body: {matches: "quick & fox"}}`, want: []int{1}},
		{name: "plain_query", where: `{body: {plain_query: "lazy dogs"}}`, want: []int{2}},
		{name: "phrase_query", where: `{body: {phrase_query: "brown fox"}}`, want: []int{1}},
		{name: "websearch_query", where: `{body: {websearch_query: "engines -lazy"}}`, want: []int{5}},
		{name: "array_contains", where: `{tags: {array_contains: ["red", "blue"]}}`, want: []int{1, 4}},
		{name: "array_contained_by", where: `{tags: {array_contained_by: ["red", "blue"]}}`, want: []int{1, 2, 3, 5}},
		{name: "array_overlaps", where: `{tags: {array_overlaps: ["green", "blue"]}}`, want: []int{1, 2, 4}},
		{name: "array_contains on integers", where: `{scores: {array_contains: [1]}}`, want: []int{1, 4}},
		{name: "len_eq", where: `{tags: {len_eq: 0}}`, want: []int{3}},
		{name: "len_neq", where: `{tags: {len_neq: 1}}`, want: []int{1, 3, 4}},
		{name: "len_gt", where: `{tags: {len_gt: 1}}`, want: []int{1, 4}},
		{name: "len_gte", where: `{tags: {len_gte: 2}}`, want: []int{1, 4}},
		{name: "len_lt", where: `{tags: {len_lt: 1}}`, want: []int{3}},
		{name: "len_lte", where: `{tags: {len_lte: 1}}`, want: []int{2, 3, 5}},
		{name: "strictly_contains", where: `{attrs: {strictly_contains: {color: "red"}}}`, want: []int{1}},
		{name: "strictly_contains a nested array", where: `{attrs: {strictly_contains: {list: ["x"]}}}`, want: []int{4}},
		{name: "JSON eq", where: `{attrs: {eq: {size: 10}}}`, want: []int{5}},
		{name: "in_subnet", where: `{ip: {in_subnet: "10.0.0.0/8"}}`, want: []int{1}},
		{name: "contains_ip", where: `{net: {contains_ip: "10.9.9.9"}}`, want: []int{1}},
		{name: "contains_subnet", where: `{net: {contains_subnet: "8.8.8.0/28"}}`, want: []int{2}},
		{name: "overlaps", where: `{net: {overlaps: "8.0.0.0/8"}}`, want: []int{2}},
		{name: "is_ipv4", where: `{ip: {is_ipv4: true}}`, want: []int{1, 2, 3, 4}},
		{name: "is_ipv6", where: `{ip: {is_ipv6: true}}`, want: []int{5}},
		{name: "is_private", where: `{ip: {is_private: true}}`, want: []int{1, 3}},
		{name: "is_private false", where: `{ip: {is_private: false}}`, want: []int{2, 4, 5}},
		{name: "is_loopback", where: `{ip: {is_loopback: true}}`, want: []int{4}},
		{name: "is_multicast false", where: `{ip: {is_multicast: false}}`, want: []int{1, 2, 3, 4, 5}},
		{name: "is_link_local", where: `{ip: {is_link_local: true}}`, want: []int{}},
		{name: "is_documentation", where: `{ip: {is_documentation: true}}`, want: []int{5}},
		{name: "is_carrier_grade", where: `{ip: {is_carrier_grade: true}}`, want: []int{2}},
		{name: "ancestor_of", where: `{path: {ancestor_of: "top.science.physics"}}`, want: []int{1, 2, 5}, needs: "ltree"},
		{name: "descendant_of", where: `{path: {descendant_of: "top.science"}}`, want: []int{1, 2, 4}, needs: "ltree"},
		{name: "matches_lquery", where: `{path: {matches_lquery: "*.science.*{1}"}}`, want: []int{1}, needs: "ltree"},
		{name: "matches_ltxtquery", where: `{path: {matches_ltxtquery: "physics | art"}}`, want: []int{1, 3}, needs: "ltree"},
		{name: "matches_any_lquery", where: `{path: {matches_any_lquery: ["top.art", "top"]}}`, want: []int{3, 5}, needs: "ltree"},
		{name: "depth_eq", where: `{path: {depth_eq: 2}}`, want: []int{2, 3}, needs: "ltree"},
		{name: "depth_neq", where: `{path: {depth_neq: 2}}`, want: []int{1, 4, 5}, needs: "ltree"},
		{name: "depth_gt", where: `{path: {depth_gt: 3}}`, want: []int{4}, needs: "ltree"},
		{name: "depth_gte", where: `{path: {depth_gte: 3}}`, want: []int{1, 4}, needs: "ltree"},
		{name: "depth_lt", where: `{path: {depth_lt: 2}}`, want: []int{5}, needs: "ltree"},
		{name: "depth_lte", where: `{path: {depth_lte: 2}}`, want: []int{2, 3, 5}, needs: "ltree"},
		{name: "cosine_distance", where: `{embedding: {cosine_distance: {vector: [1, 0, 0], threshold: 0.1}}}`, want: []int{1}, needs: "vector"},
		{name: "l2_distance", where: `{embedding: {l2_distance: {vector: [0, 1, 0], threshold: 0.5}}}`, want: []int{2}, needs: "vector"},
		{name: "l1_distance", where: `{embedding: {l1_distance: {vector: [0, 0, 1], threshold: 0.5}}}`, want: []int{3}, needs: "vector"},
		{name: "inner_product", where: `{embedding: {inner_product: {vector: [1, 1, 0], threshold: 1.5}}}`, want: []int{4}, needs: "vector"},
		{name: "_and", where: `{_and: [{rating: {gte: 3}}, {tags: {array_contains: ["red"]}}]}`, want: []int{1, 5}},
		{name: "_or", where: `{_or: [{seq: {eq: 1}}, {seq: {eq: 2}}]}`, want: []int{1, 2}},
		{name: "_not", where: `{_not: {rating: {isnull: true}}}`, want: []int{1, 2, 4, 5}},
		{name: "orderBy field and direction", where: `{}`, order: `[{field: "rating", direction: DESC}]`, want: []int{3, 1, 5, 2, 4}},
	}
	for _, root := range []string{"samples", "plains"} {
		for _, tt := range tests {
			t.Run(root+"/"+tt.name, func(t *testing.T) {
				switch {
				case tt.needs == "ltree" && !db.ltree:
					t.Skip(db.ltreeWhy)
				case tt.needs == "vector" && !db.vector:
					t.Skip(db.vWhy)
				}
				order := tt.order
				if order == "" {
					order = `[{seq: ASC}]`
				}
				q := fmt.Sprintf(`{ %s(where: %s, orderBy: %s) { seq } }`, root, tt.where, order)
				r := db.engine.Execute(as(compatTenantA), graphql.Request{Query: q})
				if len(r.Errors) > 0 {
					t.Fatalf("%s: errors: %+v", q, *r.Errors[0])
				}
				var data map[string][]struct{ Seq int }
				if err := json.Unmarshal(r.Data, &data); err != nil {
					t.Fatal(err)
				}
				got := []int{}
				for _, row := range data[root] {
					got = append(got, row.Seq)
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("%s: got %v, want %v", q, got, tt.want)
				}
			})
		}
	}
	t.Run("a bad operand is INVALID, not a panic", func(t *testing.T) {
		for _, w := range []string{`{ip: {in_subnet: "not an address"}}`, `{name: {regex: "("}}`, `{embedding: {cosine_distance: {vector: [1], threshold: 1}}}`} {
			r := db.engine.Execute(as(compatTenantA), graphql.Request{Query: `{ samples(where: ` + w + `) { seq } }`})
			if strings.Contains(w, "embedding") && !db.vector {
				continue
			}
			mustCode(t, r, "INVALID")
		}
	})
}
