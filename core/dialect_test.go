package core_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A dialectRule is knowledge one layer must not hold: PostgreSQL's
// dialect in core (adapters/postgres maps to it behind a port), SQL and
// GraphQL SDL in cmd (which only wires the capabilities that own them).
type dialectRule struct {
	name string
	// dir is the tree scanned, relative to core; its test files are not.
	dir string
	// ident matches a forbidden identifier (a declared or used name).
	ident *regexp.Regexp
	// literal matches a forbidden string literal's value.
	literal *regexp.Regexp
}

// dialectRules are the rules TestNoDialectKnowledge enforces. Each pattern
// needs the shape of code, not of prose: help texts and doc strings may
// name a statement or a type without writing one.
var dialectRules = []dialectRule{
	{
		name: "core holds no PostgreSQL type OIDs",
		dir:  ".",
		// OID as a word of a MixedCaps or snake_case name: kindOID,
		// AcceptsOID, DataTypeOID, pg_type_oid.
		ident: regexp.MustCompile(`(^|[a-z0-9_])(OIDs?|Oids?)([A-Z0-9_]|$)|(^|_)oids?(_|[A-Z]|$)`),
	},
	{
		name:    "core sets no PostgreSQL session settings",
		dir:     ".",
		literal: regexp.MustCompile(`(?i)\b(set_config|current_setting)\s*\(|\bset\s+(local|session)\s+[a-z_.]+\s*(=|to)\s`),
	},
	{
		name: "core names no PostgreSQL catalog",
		dir:  ".",
		// pg_ names of the catalog, not keys that merely contain pg_
		// (a metadata key such as fraise.pg_type).
		literal: regexp.MustCompile(`(^|[^.\w])(pg_catalog|information_schema|pg_(class|type|attribute|namespace|proc|settings|roles|index|constraint|stat_\w+|get_\w+|export_snapshot|advisory_\w+|notify|sleep|backend_pid|cancel_backend|terminate_backend))\b`),
	},
	{
		name: "cmd writes no SQL",
		dir:  "../cmd",
		// A statement's head and the clause it cannot do without.
		literal: regexp.MustCompile(`(?is)^\s*(` +
			`select\s+(distinct\s+)?(\*|[a-z_][\w.]*\s*(\(|::|\.|,)|[a-z_][\w.]*\s+from\s)|` +
			`insert\s+into\s+[\w.]+|` +
			`update\s+[\w.]+\s+set\s|` +
			`delete\s+from\s+[\w.]+|` +
			`(create|alter|drop)\s+(or\s+replace\s+)?(table|view|function|index|trigger|schema|role|policy|type|extension|sequence)\s|` +
			`(grant|revoke)\s.+\s(on|to|from)\s|` +
			`with\s+\w+\s+as\s+(materialized\s+)?\(|` +
			`(begin|commit|rollback|listen|notify|truncate|vacuum|analyze)\s*(;|$)|` +
			`set\s+(local|session)\s+[a-z_.]+\s*(=|to)\s)`),
	},
	{
		name: "cmd writes no GraphQL SDL",
		dir:  "../cmd",
		// A type system definition: its keyword, a name, and a body or
		// directive; or an extension; or a schema definition.
		literal: regexp.MustCompile(`(?m)^\s*(` +
			`(extend\s+)?(type|input|interface|enum)\s+[A-Z_]\w*(\s+implements\s+[\w&\s]+)?(\s*@\w+(\([^)]*\))?)*\s*\{|` +
			`extend\s+(type|input|interface|enum|union|scalar|schema)\s|` +
			`union\s+[A-Z_]\w*\s*=|` +
			`scalar\s+[A-Z_]\w*\s*$|` +
			`schema\s*\{\s*(query|mutation|subscription)\s*:|` +
			`directive\s+@\w+)`),
	},
}

// TestNoDialectKnowledge fails when a layer holds knowledge that belongs to
// another: PostgreSQL's type OIDs, session settings or catalog in core, or
// SQL or GraphQL SDL in cmd.
func TestNoDialectKnowledge(t *testing.T) {
	for _, r := range dialectRules {
		t.Run(r.name, func(t *testing.T) {
			for _, v := range violations(t, r) {
				t.Error(v)
			}
		})
	}
}

// TestDialectRulesCatchCode checks the rules against samples of what each
// must flag and must let pass, so a loosened pattern cannot pass silently
// and a tightened one cannot start flagging prose.
func TestDialectRulesCatchCode(t *testing.T) {
	rule := map[string]dialectRule{}
	for _, r := range dialectRules {
		rule[r.name] = r
	}
	tests := []struct {
		rule, ident, literal string
		want                 bool
	}{
		{rule: "core holds no PostgreSQL type OIDs", ident: "kindOID", want: true},
		{rule: "core holds no PostgreSQL type OIDs", ident: "AcceptsOID", want: true},
		{rule: "core holds no PostgreSQL type OIDs", ident: "DataTypeOID", want: true},
		{rule: "core holds no PostgreSQL type OIDs", ident: "OIDs", want: true},
		{rule: "core holds no PostgreSQL type OIDs", ident: "type_oid", want: true},
		{rule: "core holds no PostgreSQL type OIDs", ident: "avoid", want: false},
		{rule: "core holds no PostgreSQL type OIDs", ident: "Void", want: false},
		{rule: "core holds no PostgreSQL type OIDs", ident: "ColumnType", want: false},
		{rule: "core sets no PostgreSQL session settings", literal: "select to_jsonb(set_config('statement_timeout', $1, true))", want: true},
		{rule: "core sets no PostgreSQL session settings", literal: "current_setting('fraise.tenant')", want: true},
		{rule: "core sets no PostgreSQL session settings", literal: "SET LOCAL statement_timeout = 5", want: true},
		{rule: "core sets no PostgreSQL session settings", literal: "the statement timeout is set in the adapter", want: false},
		{rule: "core names no PostgreSQL catalog", literal: "select typname from pg_type", want: true},
		{rule: "core names no PostgreSQL catalog", literal: "select pg_export_snapshot()", want: true},
		{rule: "core names no PostgreSQL catalog", literal: "fraise.pg_type", want: false},
		{rule: "cmd writes no SQL", literal: "select v.data from public.v_observer_rule v where v.id::text = $1", want: true},
		{rule: "cmd writes no SQL", literal: "\n\t\tselect count(*)\n\t\tfrom fraise.outbox", want: true},
		{rule: "cmd writes no SQL", literal: "select fraise.reconcile($1)", want: true},
		{rule: "cmd writes no SQL", literal: "insert into fraise.rules (id) values ($1)", want: true},
		{rule: "cmd writes no SQL", literal: "update fraise.rules set enabled = false", want: true},
		{rule: "cmd writes no SQL", literal: "delete from fraise.rules", want: true},
		{rule: "cmd writes no SQL", literal: "create table t (id int)", want: true},
		{rule: "cmd writes no SQL", literal: "with x as (select 1) select * from x", want: true},
		{rule: "cmd writes no SQL", literal: "select the key to revoke from the list", want: false},
		{rule: "cmd writes no SQL", literal: "update the rules, then run fraise migrate", want: false},
		{rule: "cmd writes no SQL", literal: "create a development CA and certificates", want: false},
		{rule: "cmd writes no SQL", literal: "delete a rule", want: false},
		{rule: "cmd writes no SQL", literal: "SELECT status, message FROM fn_create_observer_rule($1::jsonb)", want: true},
		{rule: "cmd writes no SQL", literal: "SELECT id::text FROM public.v_observer_rule", want: true},
		{rule: "cmd writes no SQL", literal: "set local statement_timeout = '1s'", want: true},
		{rule: "cmd writes no SQL", literal: "set tenant = \"<id>\" (one realm per tenant)", want: false},
		{rule: "cmd writes no GraphQL SDL", literal: "type ObserverRule @view(name: \"v\") {\n  id: ID!\n}", want: true},
		{rule: "cmd writes no GraphQL SDL", literal: "\nextend type Query {\n  rules: [Rule!]!\n}", want: true},
		{rule: "cmd writes no GraphQL SDL", literal: "input RuleInput { name: String! }", want: true},
		{rule: "cmd writes no GraphQL SDL", literal: "scalar ObserverJSON\n", want: true},
		{rule: "cmd writes no GraphQL SDL", literal: "type Mutation", want: false},
		{rule: "cmd writes no GraphQL SDL", literal: "type the password twice", want: false},
		{rule: "cmd writes no GraphQL SDL", literal: "the schema's types, enums and inputs", want: false},
	}
	for _, tt := range tests {
		r, ok := rule[tt.rule]
		if !ok {
			t.Fatalf("no rule %q", tt.rule)
		}
		var got bool
		if tt.ident != "" {
			got = r.ident != nil && r.ident.MatchString(tt.ident)
		} else {
			got = r.literal != nil && r.literal.MatchString(tt.literal)
		}
		if got != tt.want {
			t.Errorf("%s: %q%q: got %v, want %v", tt.rule, tt.ident, tt.literal, got, tt.want)
		}
	}
}

// violations returns where the non-test Go files under r.dir break r.
func violations(t *testing.T, r dialectRule) []string {
	t.Helper()
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(r.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Ident:
				if r.ident != nil && r.ident.MatchString(n.Name) {
					out = append(out, fset.Position(n.Pos()).String()+": "+n.Name)
				}
			case *ast.BasicLit:
				if n.Kind != token.STRING || r.literal == nil {
					return true
				}
				s, err := strconv.Unquote(n.Value)
				if err != nil {
					return true
				}
				if m := r.literal.FindString(s); m != "" {
					out = append(out, fset.Position(n.Pos()).String()+": "+strconv.Quote(firstLine(m)))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// firstLine is s up to its first line break, trimmed, for a short report.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
