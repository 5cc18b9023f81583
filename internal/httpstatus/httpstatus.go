// Package httpstatus is the one table from core's error codes to HTTP
// statuses, shared by the HTTP transports (the GraphQL API and the
// console), which as adapters may not import each other.
package httpstatus

import (
	"net/http"

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
