package console_test

import (
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/console"
)

// TestRetryAfterFromConfig checks that the console's 503s carry the
// configured Retry-After (admission.retry_after), as every other 429 and
// 503 of the project's, and 1 when none is configured.
func TestRetryAfterFromConfig(t *testing.T) {
	for _, tt := range []struct {
		name       string
		retryAfter time.Duration
		want       string
	}{
		{"configured", 4 * time.Second, "4"},
		{"default", 0, "1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustFixture(t, func(o *console.Options) { o.Cost, o.RetryAfter = nil, tt.retryAfter })
			w := f.do(t, "POST", "/console/api/cost", []string{"viewer"}, `{"query":"{ users { id } }"}`)
			if w.Code != 503 || w.Header().Get("Retry-After") != tt.want {
				t.Errorf("got %d with Retry-After %q, want 503 with %q", w.Code, w.Header().Get("Retry-After"), tt.want)
			}
		})
	}
}
