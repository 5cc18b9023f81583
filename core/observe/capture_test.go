package observe_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
)

// demoProtection is what the demo schema protects: User.email masked,
// Post.internalNote restricted, and a type restricted whole.
func demoProtection() *observe.Protection {
	p := observe.NewProtection()
	p.GuardColumn("email", observe.Guard{Field: "User.email", Scope: "read:User.email"})
	p.GuardColumn("internalNote", observe.Guard{Field: "Post.internalNote", Scope: "read:Post.internalNote"})
	p.GuardTable("AuditEntry", observe.Guard{Field: "AuditEntry", Scope: "audit"})
	return p
}

// TestRuleCapturesOnlyItsColumns: a rule's condition and jobs see only the
// columns it names; a rule that names none sees the columns the schema
// does not protect (security #13, defect 7c).
func TestRuleCapturesOnlyItsColumns(t *testing.T) {
	c := observe.NewCompiler()
	e := core.ChangeEvent{Pos: core.Position{XID: 7, ID: 1}, Tenant: "t1", Table: "public.users", Op: core.OpUpdate,
		Key:     json.RawMessage(`{"id":1}`),
		Before:  json.RawMessage(`{"id":1,"name":"Al","email":"al@acme.test","internal_note":"vip","total":1}`),
		After:   json.RawMessage(`{"id":1,"name":"Al","email":"al@new.test","internal_note":"vip","total":2}`),
		Changed: []string{"email", "total"}}
	tests := []struct {
		name      string
		table     string
		columns   []string
		cond      string
		p         *observe.Protection
		matched   bool
		key, rows string // what the job carries: key, then before and after
		changed   string
	}{
		{"named columns only", "public.users", []string{"id", "total"}, "", demoProtection(), true,
			`{"id":1}`, `{"id":1,"total":1} {"id":1,"total":2}`, "[total]"},
		{"a named protected column is sent (its author was authorized)", "public.users", []string{"id", "email"}, "", demoProtection(), true,
			`{"id":1}`, `{"email":"al@acme.test","id":1} {"email":"al@new.test","id":1}`, "[email]"},
		{"the key only when named", "public.users", []string{"name"}, "", demoProtection(), true,
			`{}`, `{"name":"Al"} {"name":"Al"}`, "[]"},
		{"a condition on a column not captured does not match", "public.users", []string{"id"}, `after.email == "al@new.test"`, nil, false, "", "", ""},
		{"nor does one on what changed", "public.users", []string{"id"}, `"email" in changed`, nil, false, "", "", ""},
		{"a condition on a captured column does", "public.users", []string{"id", "email"}, `after.email == "al@new.test"`, nil, true,
			`{"id":1}`, `{"email":"al@acme.test","id":1} {"email":"al@new.test","id":1}`, "[email]"},
		{"no list: every column the schema does not protect", "public.users", nil, "", demoProtection(), true,
			`{"id":1}`, `{"id":1,"name":"Al","total":1} {"id":1,"name":"Al","total":2}`, "[total]"},
		{"no list: a protected column is not even a condition's", "public.users", nil, `has(after.email)`, demoProtection(), false, "", "", ""},
		{"no list, a table restricted whole: nothing", "app.audit_entries", nil, "", demoProtection(), true,
			`{}`, `{} {}`, "[]"},
		{"no list, nothing protected: the whole row", "public.users", nil, "", nil, true,
			`{"id":1}`, `{"email":"al@acme.test","id":1,"internal_note":"vip","name":"Al","total":1} {"email":"al@new.test","id":1,"internal_note":"vip","name":"Al","total":2}`, "[email total]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := core.Rule{ID: "r", Tenant: "t1", Name: "r", Table: tt.table, Columns: tt.columns, Condition: tt.cond,
				Actions: []core.Action{{Kind: core.ActionWebhook, URL: "https://hooks.acme.test/x"}}}
			set, err := observe.NewRuleSet(c, []core.Rule{r}, tt.p)
			if err != nil {
				t.Fatal(err)
			}
			ev := e
			ev.Table = tt.table
			jobs, err := set.Match(ev)
			if err != nil {
				t.Fatal(err)
			}
			if (len(jobs) == 1) != tt.matched {
				t.Fatalf("got %d jobs, want matched %v", len(jobs), tt.matched)
			}
			if !tt.matched {
				return
			}
			got := jobs[0].Event
			if string(got.Key) != tt.key || compact(got.Before)+" "+compact(got.After) != tt.rows || fmtList(got.Changed) != tt.changed {
				t.Fatalf("got key %s rows %s %s changed %v, want %s %s %s", got.Key, got.Before, got.After, got.Changed, tt.key, tt.rows, tt.changed)
			}
			// The webhook's body carries nothing else.
			m, err := observe.BuildMessage(jobs[0])
			if err != nil {
				t.Fatal(err)
			}
			if tt.columns != nil && !slicesHas(tt.columns, "email") && strings.Contains(string(m.Body), "acme.test") {
				t.Fatalf("the body holds a column not captured: %s", m.Body)
			}
		})
	}
}

func compact(raw json.RawMessage) string {
	var v any
	_ = json.Unmarshal(raw, &v)
	b, _ := json.Marshal(v)
	return string(b)
}

func fmtList(s []string) string { return "[" + strings.Join(s, " ") + "]" }

func slicesHas(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestProtectionAuthorize: capturing a protected column needs the scope
// of every field that protects it.
func TestProtectionAuthorize(t *testing.T) {
	p := demoProtection()
	p.GuardColumn("email", observe.Guard{Field: "Author.email", Scope: "read:Author.email"})
	tests := []struct {
		name    string
		table   string
		columns []string
		scopes  []string
		want    core.Code
	}{
		{"unprotected columns", "public.users", []string{"id", "name"}, nil, ""},
		{"a masked column without its scope", "public.users", []string{"id", "email"}, nil, core.CodeForbidden},
		{"a masked column with one of two scopes", "public.users", []string{"email"}, []string{"read:User.email"}, core.CodeForbidden},
		{"a masked column with both", "public.users", []string{"email"}, []string{"read:User.email", "read:Author.email"}, ""},
		{"snake_case matches camelCase", "public.posts", []string{"internal_note"}, nil, core.CodeForbidden},
		{"with the field's scope", "public.posts", []string{"internal_note"}, []string{"read:Post.internalNote"}, ""},
		{"a table restricted whole", "app.audit_entry", []string{"id"}, nil, core.CodeForbidden},
		{"no columns named", "public.users", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Authorize(core.Principal{Scopes: tt.scopes}, tt.table, tt.columns)
			if got := core.ErrorCode(err); got != tt.want {
				t.Fatalf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
	var none *observe.Protection
	if err := none.Authorize(core.Principal{}, "public.users", []string{"email"}); err != nil {
		t.Fatalf("nil protection: got %v, want nothing protected", err)
	}
}

// TestValidateColumns: a rule's column list is checked, and its templates
// may read only the columns it captures.
func TestValidateColumns(t *testing.T) {
	c := observe.NewCompiler()
	base := core.Rule{Name: "r", Table: "public.orders", Actions: []core.Action{{Kind: core.ActionSlack, URL: "https://hooks.slack.com/services/x",
		Template: "order {{key.id}}: {{after.total}}"}}}
	tests := []struct {
		name    string
		columns []string
		want    string // in the message; "" for valid
	}{
		{"the columns the template reads", []string{"id", "total"}, ""},
		{"no list", nil, ""},
		{"a template reading a column not captured", []string{"id"}, `"total"`},
		{"an empty name", []string{"id", "total", ""}, "1 to 63"},
		{"a name named twice", []string{"id", "total", "id"}, "twice"},
		{"a name too long", []string{"id", "total", strings.Repeat("x", 64)}, "1 to 63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			r.Columns = tt.columns
			err := observe.ValidateRule(c, r)
			if tt.want == "" && err != nil || tt.want != "" && (core.ErrorCode(err) != core.CodeInvalid || !strings.Contains(core.ErrorMessage(err), tt.want)) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
