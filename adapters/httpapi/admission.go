package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// AdmissionOptions configures Admit.
type AdmissionOptions struct {
	Controller *admission.Controller
	// Tenant names the tenant a request counts against, "" for none (the
	// global bounds still apply). TenantFromAssertion is the production one.
	Tenant func(r *http.Request) string
	// MaxBodyBytes, when set, has a request's body (up to that many bytes
	// and one more) read before it may wait in the queue: net/http notices
	// a client that went away only once the body has been read, so a POST
	// whose client left would otherwise keep its place, and maybe get a
	// slot, for its whole queue timeout. Requests refused at once are not
	// read. Options.MaxBodyBytes of the handler behind is the value.
	MaxBodyBytes int64
	// Metrics, when set, counts refusals in fraise_errors_total.
	Metrics *Metrics
}

// Admit wraps next with admission control: a request runs when the
// controller admits it, possibly after waiting in its queue, and is
// otherwise refused with a GraphQL-shaped JSON body and Retry-After: 429
// RATE_LIMITED when its tenant is over its share, 503 UNAVAILABLE when the
// core is overloaded. An admitted request's answer carries
// "Server-Timing: core;dur=<ms>", the time from its arrival at admission
// (queue wait included) to its response header: what the core spent,
// whatever the network and the client add.
func Admit(next http.Handler, o AdmissionOptions) http.Handler {
	if o.Controller == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The tenant costs a signature check: when the core is full or
		// short of memory, the controller refuses without asking for it.
		release, err := o.Controller.AdmitFunc(r.Context(), func() string {
			// Called only for a request that runs or waits.
			if o.MaxBodyBytes > 0 && r.Body != nil && r.Body != http.NoBody {
				primeBody(r, o.MaxBodyBytes)
			}
			if o.Tenant == nil {
				return ""
			}
			return o.Tenant(r)
		})
		if err != nil {
			// The refusal carries the controller's Retry-After
			// (admission.retry_after), which the edge answers with.
			newEdge(nil, o.Metrics, 0).fail(r.Context(), w, MediaJSON, err)
			return
		}
		defer release()
		next.ServeHTTP(&timedWriter{ResponseWriter: w, start: start}, r)
	})
}

// primeBody reads r's body, up to limit bytes and one more, and puts what
// it read back in front of the rest: reading it to its end starts
// net/http's watch for the client's going away (r's context then ends),
// and the handler reads the same bytes, and errors, as it would have.
func primeBody(r *http.Request, limit int64) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	rest := io.Reader(r.Body)
	if err != nil {
		rest = errReader{err}
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), rest), r.Body}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// timedWriter adds the Server-Timing header as the response header goes.
type timedWriter struct {
	http.ResponseWriter
	start time.Time
	wrote bool
}

func (t *timedWriter) WriteHeader(status int) {
	if !t.wrote {
		t.wrote = true
		d := time.Since(t.start)
		t.Header().Set("Server-Timing", "core;dur="+strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64))
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *timedWriter) Write(b []byte) (int, error) {
	if !t.wrote {
		t.WriteHeader(http.StatusOK)
	}
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (t *timedWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// TenantFromAssertion returns a Tenant function that trusts only a valid
// identity assertion: a request without one counts against the global
// bounds alone (and the handler refuses it), so a forged tenant header can
// neither use nor exhaust another tenant's share.
func TenantFromAssertion(v *assertion.Verifier) func(r *http.Request) string {
	return func(r *http.Request) string {
		a, err := verifyRequest(r, v) // once per request under VerifyAssertion
		if err != nil {
			return ""
		}
		return a.Principal.Tenant
	}
}
