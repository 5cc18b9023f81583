package graphql_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// marker is planted in every value of the seed documents and variables: if
// it ever shows up in SQL text, a value was written into the statement
// instead of being passed as a parameter.
const marker = "zq9mark"

// FuzzExecute runs arbitrary documents and variables through the engine
// against the demo schema, with a principal holding every scope so that
// every path compiles. It must not panic, and no SQL it emits may contain
// the marker, whatever the fuzzer does with it.
func FuzzExecute(f *testing.F) {
	seeds := []struct{ doc, vars string }{
		{`{ users { name } }`, `{}`},
		{`query($t: String) { posts(where: {title: {eq: $t}}) { title } }`, `{"t": "zq9mark' or 1=1 --"}`},
		{`{ zq9mark: posts(where: {author: {name: {in: ["zq9mark", "a"]}}, or: [{body: {like: "%zq9mark%"}}, {not: {publishedAt: {isNull: true}}}]}, orderBy: [{minutes: DESC_NULLS_LAST}], limit: 3, offset: 1) { zq9mark: title author { name email } } }`, `{}`},
		{`query Q($w: PostWhere, $o: [PostOrderBy!]) { postsConnection(where: $w, orderBy: $o, first: 2, after: "bzoy") { totalCount edges { cursor node { title stats { words } } } pageInfo { hasNextPage endCursor } } }`,
			`{"w": {"stats": {"readingMinutes": {"gte": 1, "nin": [2, 3]}}, "title": {"ilike": "zq9mark%", "contains": "zq9mark"}}, "o": [{"author": {"name": "ASC"}}]}`},
		{`query($id: ID!) { post(id: $id) { ... on Post { title internalNote } __typename } user(id: "zq9mark") { name posts { title } } }`, `{"id": "a1000000-0000-4000-8000-000000000001"}`},
		{`mutation($in: CreatePostInput!) { createPost(input: $in) { ... on CreatePostSuccess { post { title } } ... on CreatePostError { message } } }`,
			`{"in": {"title": "zq9mark", "authorId": "zq9mark", "tags": ["zq9mark"], "readingMinutes": 5}}`},
		{`query($s: Boolean!) { users @skip(if: $s) { name } posts(where: {publishedAt: {gt: "zq9mark"}, minutes: {eq: 3}}) { id @include(if: $s) } }`, `{"s": false}`},
		{`{ __schema { types { name } } __type(name: "zq9mark") { name } }`, `{}`},
		{`query($b: String) { postsConnection(last: 2, before: $b, orderBy: [{title: DESC_NULLS_FIRST}]) { edges { cursor node { id } } pageInfo { hasPreviousPage startCursor } } }`,
			`{"b": "WyJ6cTltYXJrIiwgInpxOW1hcmsiLCAiYTEwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAxIl0="}`},
	}
	for _, s := range seeds {
		f.Add(s.doc, s.vars)
	}
	e, db := mustRecordingEngine(f, graphql.Options{Introspection: true, APQ: true})
	f.Fuzz(func(t *testing.T, doc, vars string) {
		var v map[string]any
		if json.Unmarshal([]byte(vars), &v) != nil {
			v = nil
		}
		e.Execute(as(demo.TenantAcme, "read:User.email", "read:Post.internalNote"), graphql.Request{Query: doc, Variables: v})
		for _, s := range db.take() {
			if strings.Contains(strings.ToLower(s.sql), marker) {
				t.Fatalf("a request value reached the SQL text: %s", s.sql)
			}
		}
	})
}
