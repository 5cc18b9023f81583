package core_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/fraise-dev/fraise/core"
)

func TestErrorCodeAndMessage(t *testing.T) {
	cause := errors.New("pq: relation v_secret does not exist")
	tests := []struct {
		name     string
		err      error
		wantCode core.Code
		wantMsg  string
	}{
		{"nil", nil, "", ""},
		{"plain errors are internal and say nothing", cause, core.CodeInternal, "internal error"},
		{"internal error hides its cause", core.E("db.query", core.CodeInternal, cause), core.CodeInternal, "internal error"},
		{"coded error with message", core.Errorf(core.CodeInvalid, "bad tenant"), core.CodeInvalid, "bad tenant"},
		{"coded error without message gets the default", core.E("op", core.CodeTimeout, cause), core.CodeTimeout, "timed out"},
		{"wrapped with %w keeps its code", fmt.Errorf("outer: %w", core.Errorf(core.CodeForbidden, "no")), core.CodeForbidden, "no"},
		{"outer message wins", &core.Error{Code: core.CodeNotFound, Message: "no such user", Err: core.Errorf(core.CodeInvalid, "inner")}, core.CodeNotFound, "no such user"},
		{"an error without code takes its cause's", &core.Error{Op: "x", Err: core.Errorf(core.CodeConflict, "dup")}, core.CodeConflict, "dup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := core.ErrorCode(tt.err); got != tt.wantCode {
				t.Errorf("got code %q, want %q", got, tt.wantCode)
			}
			if got := core.ErrorMessage(tt.err); got != tt.wantMsg {
				t.Errorf("got message %q, want %q", got, tt.wantMsg)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	cause := errors.New("cause")
	if err := core.E("op", core.CodeInternal, cause); !errors.Is(err, cause) {
		t.Fatal("errors.Is does not see the cause")
	}
}
