package httpstatus_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/httpstatus"
)

// hinted is a cause that names its own retry delay.
type hinted time.Duration

func (h hinted) Error() string             { return "retry later" }
func (h hinted) RetryDelay() time.Duration { return time.Duration(h) }

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		name       string
		err        error
		configured time.Duration
		want       string
	}{
		{"no error: the configured delay", nil, 3 * time.Second, "3"},
		{"no hint: the configured delay", errors.New("down"), 3 * time.Second, "3"},
		{"the refusal's own delay first", &core.Error{Code: core.CodeUnavailable, Err: hinted(5 * time.Second)}, 3 * time.Second, "5"},
		{"a hint deep in the chain", fmt.Errorf("export: %w", &core.Error{Code: core.CodeRateLimited, Err: hinted(2 * time.Second)}), 9 * time.Second, "2"},
		{"rounded up to whole seconds", hinted(1200 * time.Millisecond), time.Second, "2"},
		{"at least one second", nil, 0, "1"},
	} {
		if got := httpstatus.RetryAfter(tt.err, tt.configured); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
