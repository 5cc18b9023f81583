package graphql_test

import (
	"errors"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
)

// TestErrorCode checks the core code each error stands for: its cause's
// when it has one, whatever the name on the wire, and otherwise the one
// its extensions.code names.
func TestErrorCode(t *testing.T) {
	ext := func(c string) map[string]any { return map[string]any{"code": c} }
	tests := []struct {
		name string
		err  *graphql.Error
		want core.Code
	}{
		{"cause internal", &graphql.Error{Extensions: ext("INTERNAL"), Err: errors.New("disk")}, core.CodeInternal},
		{"cause timeout named STATEMENT_TIMEOUT", &graphql.Error{Extensions: ext(graphql.CodeStatementTimeout),
			Err: core.Errorf(core.CodeTimeout, "x")}, core.CodeTimeout},
		{"cause unavailable", &graphql.Error{Extensions: ext("UNAVAILABLE"), Err: core.Errorf(core.CodeUnavailable, "x")}, core.CodeUnavailable},
		{"parse failure", &graphql.Error{Extensions: ext(graphql.CodeParseFailed)}, core.CodeInvalid},
		{"cost limit", &graphql.Error{Extensions: ext(graphql.CodeCostLimit)}, core.CodeInvalid},
		{"statement timeout", &graphql.Error{Extensions: ext(graphql.CodeStatementTimeout)}, core.CodeTimeout},
		{"result too large", &graphql.Error{Extensions: ext(graphql.CodeResultTooLarge)}, core.CodeTooLarge},
		{"a core code", &graphql.Error{Extensions: ext("FORBIDDEN")}, core.CodeForbidden},
		{"unknown name", &graphql.Error{Extensions: ext("SOMETHING_ELSE")}, core.CodeInvalid},
		{"no extensions", &graphql.Error{}, core.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Code(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
