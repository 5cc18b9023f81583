package httpapi_test

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/internal/logtest"
)

// hinted is a cause that names its own retry delay, as an admission
// refusal or a quota does.
type hinted time.Duration

func (h hinted) Error() string             { return "retry later" }
func (h hinted) RetryDelay() time.Duration { return time.Duration(h) }

// TestRetryAfterFromTheRefusalOrConfig checks that a 429 or 503 carries
// the refusal's own delay when its error chain names one, and the
// configured one (admission.retry_after) otherwise; never a constant.
func TestRetryAfterFromTheRefusalOrConfig(t *testing.T) {
	schema, err := graphql.ParseSchema(demo.SDL)
	if err != nil {
		t.Fatal(err)
	}
	hash := core.DocumentHash("{ users { id } }")
	body := `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hash + `"}}}`
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"503 without a hint", &core.Error{Op: "t", Code: core.CodeUnavailable, Message: "down"}, "7"},
		{"429 without a hint", &core.Error{Op: "t", Code: core.CodeRateLimited, Message: "slow down"}, "7"},
		{"503 with a hint", &core.Error{Op: "t", Code: core.CodeUnavailable, Message: "down", Err: hinted(3 * time.Second)}, "3"},
		{"429 with a hint, rounded up", &core.Error{Op: "t", Code: core.CodeRateLimited, Message: "slow down", Err: hinted(1500 * time.Millisecond)}, "2"},
		{"404 with a hint", &core.Error{Op: "t", Code: core.CodeNotFound, Message: "gone", Err: hinted(3 * time.Second)}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signer, keys := assertiontest.New(t, nil)
			h := httpapi.NewHandler(httpapi.Options{
				Verifier: assertion.NewVerifier(keys, nil),
				Engine: graphql.NewEngine(schema, failingDB{tt.err},
					graphql.Options{APQ: true, Persisted: failingStore{tt.err}}),
				Logger: slog.New(&logtest.Recorder{}), Metrics: httpapi.NewMetrics(), RetryAfter: 7 * time.Second,
			})
			tok, err := signer.Sign(alice, assertiontest.RequestID(), assertiontest.GraphQL("POST", "/graphql", []byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("POST", "/graphql", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", httpapi.MediaGraphQLResponse)
			req.Header.Set(assertion.Header, tok)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if got := w.Header().Get("Retry-After"); got != tt.want {
				t.Errorf("got Retry-After %q (status %d), want %q", got, w.Code, tt.want)
			}
		})
	}
}
