package flight_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/core/graphql"
)

// protectedSDL has a field of each protection: masked with its own scope
// and with the default one, @auth on a field and on a whole type, and a
// nested object whose field is masked.
const protectedSDL = `
type User {
  id: ID!
  name: String!
  email: String! @mask(kind: EMAIL, scope: "read:User.email")
  phone: String @mask(kind: PII)
  createdAt: String!
  score: Int @field(path: "stats.score")
  tags: [String!]!
  note: String @auth(scope: "read:User.note")
  boss: Boss
  friends: [Boss!]!
}
type Boss { name: String! email: String! @mask(kind: EMAIL, scope: "read:User.email") }
type Audit @auth(scope: "audit") { id: ID! what: String! }
type Query { users: [User!]! audits: [Audit!]! }
`

var scoped = core.Principal{Subject: "rita", Tenant: analyst.Tenant, Roles: analyst.Roles,
	Scopes: []string{"read:User.email", "unmask:User.phone", "read:User.note", "audit", "unmask:people.flat.email"}}

func mustTypes(tb testing.TB) *graphql.Schema {
	tb.Helper()
	s, err := graphql.ParseSchema(protectedSDL)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func cols(tb testing.TB, specs ...string) []flight.Column {
	tb.Helper()
	var out []flight.Column
	for _, s := range specs {
		name, typ, _ := strings.Cut(s, " ")
		out = append(out, flight.Column{Name: name, Type: mustType(tb, typ)})
	}
	return out
}

// mustProtectedCatalog declares people.users over the GraphQL type User
// and people.flat over a plain view, whose columns declare protection.
func mustProtectedCatalog(tb testing.TB) *flight.Catalog {
	tb.Helper()
	users := cols(tb, "id uuid", "email text", "phone text", "created_at timestamptz", "score int4", "tags text[]", "note text", "boss_email text")
	users[7].Field = "boss.email"
	flat := cols(tb, "id int8", "email text", "salary numeric(10,2)")
	flat[1].Protection = core.Protection{Mask: core.MaskEmail}
	flat[2].Protection = core.Protection{Auth: []string{"hr"}}
	c, err := flight.NewCatalog([]flight.Dataset{
		{Name: "people.users", Type: "User", Columns: users},
		{Name: "people.flat", View: "hr.v_people", Columns: flat},
		{Name: "audits", Type: "Audit", Columns: cols(tb, "what text")},
	}, mustTypes(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestCompileAppliesFieldProtection(t *testing.T) {
	c := mustProtectedCatalog(t)
	hr := scoped
	hr.Scopes = append(slices.Clone(scoped.Scopes), "hr")
	tests := []struct {
		name    string
		as      core.Principal
		cmd     string
		wantSQL string
	}{
		{"masked and hidden for a caller without the scopes", analyst, `{"dataset":"people.users"}`,
			`select ("data"->>'id')::uuid as "id", ` +
				`(case when jsonb_typeof("data"->'email') = 'string' then regexp_replace(("data"->>'email')::text, '^(.)[^@]*', '\1***') when ("data"->>'email')::text is not null then '***' end) as "email", ` +
				`(case when jsonb_typeof("data"->'phone') = 'string' then (left(("data"->>'phone')::text, 1) || '***') when ("data"->>'phone')::text is not null then '***' end) as "phone", ` +
				`("data"->>'createdAt')::timestamptz as "created_at", ("data"->'stats'->>'score')::int4 as "score", ` +
				`(case when jsonb_typeof("data"->'tags') = 'array' then array(select e.v::text from jsonb_array_elements_text("data"->'tags') with ordinality e(v, i) order by e.i) end) as "tags", ` +
				`null::text as "note", ` +
				`(case when jsonb_typeof("data"->'boss'->'email') = 'string' then regexp_replace(("data"->'boss'->>'email')::text, '^(.)[^@]*', '\1***') when ("data"->'boss'->>'email')::text is not null then '***' end) as "boss_email" ` +
				`from "v_user"`},
		{"clear for a caller with them", scoped, `{"dataset":"people.users","columns":["email","phone","note","boss_email"],"where":{"email":{"like":"a%"}},"order":[{"column":"note"}]}`,
			`select ("data"->>'email')::text as "email", ("data"->>'phone')::text as "phone", ("data"->>'note')::text as "note", ("data"->'boss'->>'email')::text as "boss_email" ` +
				`from "v_user" where ("data"->>'email')::text like $1::text order by ("data"->>'note')::text`},
		{"declared on a plain view", analyst, `{"dataset":"people.flat"}`,
			`select "id", (case when "email" is not null then regexp_replace("email", '^(.)[^@]*', '\1***') end) as "email", null::numeric(10,2) as "salary" from "hr"."v_people"`},
		{"declared, with the scopes", hr, `{"dataset":"people.flat","where":{"salary":{"gt":"1"}}}`,
			`select "id", "email", "salary" from "hr"."v_people" where "salary" > $1::text::numeric`},
		{"@auth on the type", analyst, `{"dataset":"audits"}`, `select null::text as "what" from "v_audit"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := flight.ParseCommand([]byte(tt.cmd))
			if err != nil {
				t.Fatal(err)
			}
			d, err := c.Lookup(tt.as, q.Dataset)
			if err != nil {
				t.Fatal(err)
			}
			st, err := flight.Compile(d, q, tt.as)
			if err != nil {
				t.Fatal(err)
			}
			if st.SQL != tt.wantSQL {
				t.Errorf("got  %s\nwant %s", st.SQL, tt.wantSQL)
			}
			// The schema never depends on who asks.
			want, _ := d.Schema(q.Columns)
			if got, _ := flight.StatementSchema(st); !got.Equal(want) {
				t.Errorf("got schema %s, want %s", got, want)
			}
		})
	}
}

func TestCompileRefusesFilteringByProtectedColumns(t *testing.T) {
	c := mustProtectedCatalog(t)
	for _, cmd := range []string{
		`{"dataset":"people.users","where":{"email":{"eq":"a@b.c"}}}`,
		`{"dataset":"people.users","where":{"or":[{"created_at":{"isNull":true}},{"not":{"phone":{"isNull":true}}}]}}`,
		`{"dataset":"people.users","where":{"note":{"isNull":false}}}`,
		`{"dataset":"people.users","order":[{"column":"boss_email"}]}`,
		`{"dataset":"people.flat","where":{"salary":{"gt":"100000"}}}`,
		`{"dataset":"people.flat","order":[{"column":"email","desc":true}]}`,
	} {
		t.Run(cmd, func(t *testing.T) {
			q, err := flight.ParseCommand([]byte(cmd))
			if err != nil {
				t.Fatal(err)
			}
			d, _ := c.Lookup(analyst, q.Dataset)
			_, err = flight.Compile(d, q, analyst)
			if code := core.ErrorCode(err); code != core.CodeForbidden || !strings.Contains(err.Error(), "not allowed to filter or order by column") {
				t.Errorf("got %v (%s), want FORBIDDEN", err, code)
			}
		})
	}
}

func TestCatalogBindsDatasetsToGraphQLTypes(t *testing.T) {
	types := mustTypes(t)
	with := func(c []flight.Column, f func([]flight.Column)) []flight.Column { f(c); return c }
	tests := []struct {
		name    string
		ds      flight.Dataset
		types   flight.Types
		wantErr string
	}{
		{"a type's view exported as a plain view", flight.Dataset{Name: "raw", View: "public.v_user", Columns: cols(t, "id uuid", "data jsonb")}, types,
			`"raw": public.v_user is the view of GraphQL type User`},
		{"a type's view without its schema", flight.Dataset{Name: "raw", View: "v_audit", Columns: cols(t, "id uuid")}, types,
			"view of GraphQL type Audit"},
		{"a type and a view", flight.Dataset{Name: "u", Type: "User", View: "v_user", Columns: cols(t, "id uuid")}, types, "leave view out"},
		{"a type no root field returns", flight.Dataset{Name: "b", Type: "Boss", Columns: cols(t, "name text")}, types, "reads from no view"},
		{"an unknown field", flight.Dataset{Name: "u", Type: "User", Columns: cols(t, "password text")}, types, "type User has no field password"},
		{"an object field", flight.Dataset{Name: "u", Type: "User", Columns: cols(t, "boss jsonb")}, types, "not a scalar"},
		{"through a list of objects", flight.Dataset{Name: "u", Type: "User", Columns: with(cols(t, "f text"), func(c []flight.Column) { c[0].Field = "friends.email" })}, types, "not an object"},
		{"a list as a scalar", flight.Dataset{Name: "u", Type: "User", Columns: cols(t, "tags text")}, types, "declare text[] or jsonb"},
		{"a scalar as a list", flight.Dataset{Name: "u", Type: "User", Columns: cols(t, "name text[]")}, types, "declare text"},
		{"a masked field not text", flight.Dataset{Name: "u", Type: "User", Columns: cols(t, "email jsonb")}, types, "a masked column is text"},
		{"a masked field masked again", flight.Dataset{Name: "u", Type: "User", Columns: with(cols(t, "email text"), func(c []flight.Column) {
			c[0].Protection.Mask = core.MaskSecret
		})}, types, "masked already"},
		{"bytea from JSON", flight.Dataset{Name: "u", Type: "User", Columns: cols(t, "name bytea")}, types, "bytea"},
		{"a field of a plain view", flight.Dataset{Name: "p", View: "v_p", Columns: with(cols(t, "a text"), func(c []flight.Column) { c[0].Field = "a" })}, types, "reads none"},
		{"a field that is no name", flight.Dataset{Name: "u", Type: "User", Columns: with(cols(t, "a text"), func(c []flight.Column) { c[0].Field = "a..b" })}, types, "GraphQL field name"},
		{"an unknown mask", flight.Dataset{Name: "p", View: "v_p", Columns: with(cols(t, "a text"), func(c []flight.Column) { c[0].Protection.Mask = "HASH" })}, types, "none of EMAIL, PII, SECRET"},
		{"a declared mask not text", flight.Dataset{Name: "p", View: "v_p", Columns: with(cols(t, "a int8"), func(c []flight.Column) { c[0].Protection.Mask = core.MaskPII })}, types, "a masked column is text"},
		{"a mask scope without a mask", flight.Dataset{Name: "p", View: "v_p", Columns: with(cols(t, "a text"), func(c []flight.Column) { c[0].Protection.MaskScope = "x" })}, types, "without a mask"},
		{"a type without a schema", flight.Dataset{Name: "u", Type: "User", Columns: cols(t, "id uuid")}, nil, "no GraphQL schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := flight.NewCatalog([]flight.Dataset{tt.ds}, tt.types)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}

	t.Run("check finds what needs no schema", func(t *testing.T) {
		err := flight.Check([]flight.Dataset{{Name: "u", Type: "User", Columns: cols(t, "password text")}})
		if err != nil {
			t.Errorf("got %v, want no error: only the schema knows User's fields", err)
		}
		err = flight.Check([]flight.Dataset{{Name: "u", Type: "User", View: "v_user", Columns: cols(t, "id uuid")}})
		if err == nil {
			t.Error("got no error for a dataset with both a type and a view")
		}
	})

	t.Run("protection is the field's and the column's own", func(t *testing.T) {
		c := cols(t, "email text", "name text", "what text")
		c[0].Protection.Auth = []string{"pii"}
		c[1].Protection.Mask = core.MaskPII
		cat, err := flight.NewCatalog([]flight.Dataset{{Name: "u", Type: "User", Columns: c[:2]}, {Name: "a", Type: "Audit", Columns: c[2:]}}, types)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := cat.Lookup(analyst, "u")
		want := map[string]core.Protection{
			"email": {Auth: []string{"pii"}, Mask: core.MaskEmail, MaskScope: "read:User.email"},
			"name":  {Mask: core.MaskPII, MaskScope: "unmask:u.name"},
		}
		for name, w := range want {
			got, _ := d.Column(name)
			if !slices.Equal(got.Protection.Auth, w.Auth) || got.Protection.Mask != w.Mask || got.Protection.MaskScope != w.MaskScope {
				t.Errorf("column %s: got %+v, want %+v", name, got.Protection, w)
			}
		}
		a, _ := cat.Lookup(analyst, "a")
		if got, _ := a.Column("what"); !slices.Equal(got.Protection.Auth, []string{"audit"}) {
			t.Errorf("column what: got %+v, want the type's @auth(scope: \"audit\")", got.Protection)
		}
	})
}

// FuzzCompileProtected: whatever a client asks of datasets with protected
// columns, a caller without the scopes never gets a protected column's
// value unmasked in the select list, nor any in a filter or an order.
func FuzzCompileProtected(f *testing.F) {
	f.Add(`{"dataset":"people.flat","where":{"id":{"gt":1}},"order":[{"column":"id"}]}`)
	f.Add(`{"dataset":"people.users","columns":["email","note"],"where":{"or":[{"email":{"eq":"x"}},{"id":{"isNull":true}}]}}`)
	c := mustProtectedCatalog(f)
	f.Fuzz(func(t *testing.T, cmd string) {
		q, err := flight.ParseCommand([]byte(cmd))
		if err != nil {
			return
		}
		d, err := c.Lookup(analyst, q.Dataset)
		if err != nil {
			return
		}
		st, err := flight.Compile(d, q, analyst)
		if err != nil {
			if code := core.ErrorCode(err); code != core.CodeInvalid && code != core.CodeForbidden {
				t.Fatalf("code %s for %q: %v", code, cmd, err)
			}
			return
		}
		// The statement's own from (a list field's subquery has another).
		_, rest, _ := strings.Cut(st.SQL, ` from "`+strings.ReplaceAll(d.View, ".", `"."`)+`"`)
		for _, col := range st.Columns {
			if col.Protection.Clear(analyst) {
				continue
			}
			for _, ref := range []string{`"` + col.Name + `"`, keyOf[col.Name]} {
				if ref != "" && strings.Contains(rest, ref) {
					t.Fatalf("%q: protected column %s in the filter or order of %s", cmd, col.Name, st.SQL)
				}
			}
			hidden := `end) as "` + col.Name + `"` // a mask's case ... end
			if !col.Protection.Readable(analyst) {
				hidden = "null::" + col.Type.String() + ` as "` + col.Name + `"`
			}
			if !strings.Contains(st.SQL, hidden) {
				t.Fatalf("%q: protected column %s selected without %s: %s", cmd, col.Name, hidden, st.SQL)
			}
		}
	})
}

// keyOf is how the SQL reads the protected fields of people.users.
var keyOf = map[string]string{"email": `>'email'`, "phone": `>'phone'`, "note": `>'note'`, "boss_email": `'boss'->>'email'`}
