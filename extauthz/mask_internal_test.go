package extauthz

import (
	"strings"
	"testing"
)

// TestMask checks the last line of defence of the decision log: a reason
// that quotes a credential (a library echoing its input) loses the secret.
func TestMask(t *testing.T) {
	t.Parallel()
	const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	const key = "frs_0123456789abcdef_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"
	for _, tt := range []struct{ name, in, keep, drop string }{
		{name: "JWT", in: "parse " + jwt + ": bad", keep: "eyJhbGci***", drop: "c2lnbmF0dXJl"},
		{name: "API key", in: "key " + key + " refused", keep: "frs_0123456789abcdef_***", drop: "abcdefghijklmnopqrstuvwxyz234567"},
		{name: "nothing to mask", in: "token is expired (exp)", keep: "token is expired (exp)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := mask(tt.in)
			if !strings.Contains(got, tt.keep) || (tt.drop != "" && strings.Contains(got, tt.drop)) {
				t.Fatalf("got %q, want %q kept and %q gone", got, tt.keep, tt.drop)
			}
		})
	}
}
