package core_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

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

// TestRetryAfterReadsTheChain checks that the hint is found however deep
// the refusal is wrapped, and that an error without one says so.
func TestRetryAfterReadsTheChain(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"none", errors.New("x"), 0, false},
		{"direct", delayErr(3 * time.Second), 3 * time.Second, true},
		{"wrapped", core.E("op", core.CodeRateLimited, fmt.Errorf("w: %w", delayErr(time.Second))), time.Second, true},
		{"nil", nil, 0, false},
	}
	for _, tt := range tests {
		got, ok := core.RetryAfter(tt.err)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: RetryAfter = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

type delayErr time.Duration

func (d delayErr) Error() string             { return "refused" }
func (d delayErr) RetryDelay() time.Duration { return time.Duration(d) }
