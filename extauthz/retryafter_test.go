package extauthz_test

import (
	"context"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz"
)

// refusingKeys refuses every API key with err, as an authenticator over
// its lookup allowance does.
type refusingKeys struct{ err error }

func (k refusingKeys) Verify(context.Context, string) (core.Principal, error) {
	return core.Principal{}, k.err
}

// hinted is a cause that names its own retry delay.
type hinted time.Duration

func (h hinted) Error() string             { return "too many lookups" }
func (h hinted) RetryDelay() time.Duration { return time.Duration(h) }

// TestRetryAfterFromTheRefusalOrConfig checks that a 429 carries the
// refusal's own delay when its error names one (core.RetryAfter), and the
// configured one (admission.retry_after) otherwise.
func TestRetryAfterFromTheRefusalOrConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"no hint", &core.Error{Op: "t", Code: core.CodeRateLimited, Message: "slow down"}, "7"},
		{"a hint", &core.Error{Op: "t", Code: core.CodeRateLimited, Message: "slow down", Err: hinted(3 * time.Second)}, "3"},
		{"a hint, rounded up", &core.Error{Op: "t", Code: core.CodeRateLimited, Message: "slow down", Err: hinted(2100 * time.Millisecond)}, "3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustFixture(t, func(o *extauthz.Options) {
				o.APIKeys = refusingKeys{tt.err}
				o.RetryAfter = 7 * time.Second
			})
			d := mustDenial(t, mustCheck(t, f.client, graphqlRequest("Bearer frs_00000000000000a1_secret", "{ users { id } }")))
			if d.status != 429 || d.headers["retry-after"] != tt.want {
				t.Errorf("got %d with Retry-After %q, want 429 with %q", d.status, d.headers["retry-after"], tt.want)
			}
		})
	}
}
