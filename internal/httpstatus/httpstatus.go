// Package httpstatus is the one table from core's error codes to HTTP
// statuses, shared by the HTTP transports (the GraphQL API and the
// console), which as adapters may not import each other.
package httpstatus

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fraise-dev/fraise/core"
)

var byCode = map[core.Code]int{
	core.CodeInvalid:         http.StatusBadRequest,
	core.CodeNotFound:        http.StatusNotFound,
	core.CodeConflict:        http.StatusConflict,
	core.CodeUnauthenticated: http.StatusUnauthorized,
	core.CodeForbidden:       http.StatusForbidden,
	core.CodeRateLimited:     http.StatusTooManyRequests,
	core.CodeQuotaExceeded:   http.StatusForbidden,
	core.CodeTooLarge:        http.StatusRequestEntityTooLarge,
	core.CodeUnavailable:     http.StatusServiceUnavailable,
	core.CodeTimeout:         http.StatusGatewayTimeout,
	core.CodeInternal:        http.StatusInternalServerError,
}

// Of returns the HTTP status for code: 500 for a code it does not know.
func Of(c core.Code) int {
	if s, ok := byCode[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// RetryAfter is the Retry-After of a 429 or 503 answering err: the delay
// err's chain names (core.RetryAfter: an admission refusal's, a quota's)
// when it names one, otherwise configured (admission.retry_after), so
// that clients back off alike whichever component refused. It is in
// whole seconds, rounded up, and at least 1.
func RetryAfter(err error, configured time.Duration) string {
	d := configured
	if h, ok := core.RetryAfter(err); ok {
		d = h
	}
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
