package graphql_test

import (
	"fmt"
	"testing"

	"github.com/fraise-dev/fraise/core/graphql"
)

// TestProtectedFields lists what @mask and @auth protect, on fields and on
// types, with the scope that lifts each.
func TestProtectedFields(t *testing.T) {
	s, err := graphql.ParseSchema(`
		type User {
			id: ID!
			email: String! @mask(kind: EMAIL)
			phone: String @mask(kind: PII, scope: "read:phone") @auth(scope: "staff")
			minutes: Int @field(path: "stats.readingMinutes") @auth(scope: "read:stats")
		}
		type Author { name: String! email: String! @mask(kind: EMAIL) }
		type Audit @auth(scope: "audit") { id: ID! action: String! author: Author }
		type Query { users: [User!]! audits: [Audit!]! }`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range s.ProtectedFields() {
		got = append(got, fmt.Sprintf("%s.%s %v %s %s type=%v view=%s", f.Type, f.Field, f.Keys, f.Scope, f.Mask, f.OnType, f.View))
	}
	want := []string{
		"Audit.action [action] audit  type=true view=v_audit",
		"Audit.author [author] audit  type=true view=v_audit",
		"Audit.id [id] audit  type=true view=v_audit",
		"Author.email [email] unmask:Author.email EMAIL type=false view=",
		"User.email [email] unmask:User.email EMAIL type=false view=v_user",
		"User.minutes [stats readingMinutes] read:stats  type=false view=v_user",
		"User.phone [phone] read:phone PII type=false view=v_user",
		"User.phone [phone] staff  type=false view=v_user",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
}
