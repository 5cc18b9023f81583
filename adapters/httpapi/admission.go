package httpapi

import (
	"math"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/admission"
	"github.com/fraise-dev/fraise/core/assertion"
)

// AdmissionOptions configures Admit.
type AdmissionOptions struct {
	Controller *admission.Controller
	// Tenant names the tenant a request counts against, "" for none (the
	// global bounds still apply). TenantFromAssertion is the production one.
	Tenant func(r *http.Request) string
}

// Admit wraps next with admission control: a request runs when the
// controller admits it, possibly after waiting in its queue, and is
// otherwise refused with a GraphQL-shaped JSON body and Retry-After: 429
// RATE_LIMITED when its tenant is over its share, 503 UNAVAILABLE when the
// core is overloaded.
func Admit(next http.Handler, o AdmissionOptions) http.Handler {
	if o.Controller == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var tenant string
		if o.Tenant != nil {
			tenant = o.Tenant(r)
		}
		release, err := o.Controller.Admit(r.Context(), tenant)
		if err != nil {
			if d, ok := admission.RetryAfter(err); ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
			}
			writeError(w, MediaJSON, &refusal{status: StatusOf(err), code: string(core.ErrorCode(err)), msg: core.ErrorMessage(err)})
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// TenantFromAssertion returns a Tenant function that trusts only a valid
// identity assertion: a request without one counts against the global
// bounds alone (and the handler refuses it), so a forged tenant header can
// neither use nor exhaust another tenant's share.
func TenantFromAssertion(v *assertion.Verifier) func(r *http.Request) string {
	return func(r *http.Request) string {
		p, err := verifyRequest(r, v) // once per request under VerifyAssertion
		if err != nil {
			return ""
		}
		return p.Tenant
	}
}

// AdmissionMetrics counts admission decisions and times queue waits.
type AdmissionMetrics struct {
	decisions *prometheus.CounterVec
	wait      prometheus.Histogram
}

// NewAdmissionMetrics registers the admission metrics in reg.
func NewAdmissionMetrics(reg prometheus.Registerer) *AdmissionMetrics {
	m := &AdmissionMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fraise_admission_decisions_total",
			Help: "Admission decisions by result (admitted, waited, refused) and refusal reason.",
		}, []string{"result", "reason"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fraise_admission_wait_seconds", Help: "Time requests spent in the admission queue.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	reg.MustRegister(m.decisions, m.wait)
	return m
}

// Observe records d; it is the controller's Options.Observe.
func (m *AdmissionMetrics) Observe(d admission.Decision) {
	m.decisions.WithLabelValues(string(d.Result), string(d.Reason)).Inc()
	if d.Wait > 0 {
		m.wait.Observe(d.Wait.Seconds())
	}
}
