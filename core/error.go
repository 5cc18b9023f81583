package core

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an Error for the edges that translate it (HTTP status,
// gRPC code, GraphQL extensions.code). The list is append-only: a code's
// meaning never changes once released, because clients match on it.
type Code string

// The application error codes.
const (
	CodeInvalid         Code = "INVALID"
	CodeNotFound        Code = "NOT_FOUND"
	CodeConflict        Code = "CONFLICT"
	CodeUnauthenticated Code = "UNAUTHENTICATED"
	CodeForbidden       Code = "FORBIDDEN"
	CodeRateLimited     Code = "RATE_LIMITED"
	CodeQuotaExceeded   Code = "QUOTA_EXCEEDED"
	CodeTooLarge        Code = "TOO_LARGE"
	CodeUnavailable     Code = "UNAVAILABLE"
	CodeTimeout         Code = "TIMEOUT"
	CodeInternal        Code = "INTERNAL"
)

// Codes returns every code, in the order they were added: what each
// edge's table must map, and what a test of an edge sends through it.
func Codes() []Code {
	return []Code{CodeInvalid, CodeNotFound, CodeConflict, CodeUnauthenticated, CodeForbidden,
		CodeRateLimited, CodeQuotaExceeded, CodeTooLarge, CodeUnavailable, CodeTimeout, CodeInternal}
}

// Error is Fraise's one application error. Code says what kind of failure it
// is, Op where it happened (for logs), Message what a client may be told, and
// Err the underlying cause (never shown to clients).
type Error struct {
	Code    Code
	Op      string
	Message string
	Err     error
}

// Errors are built in one of two ways outside this package (a test in
// error_test.go fails on an Error literal anywhere else), so that every
// Error says the same things the same way:
//
//	core.Errorf(code, format, args...)            // a client-safe message
//	core.E(op, code, err)                         // a cause, for the logs
//	core.Errorf(code, format, args...).WithOp(op) // the message, and where
//	core.Errorf(code, format, args...).Wrap(err)  // the message, and why
//
// WithOp and Wrap chain, and return a copy, so a package-level *Error may
// be used as a template.

// Errorf returns an *Error with the given code and a client-safe message.
// An empty format leaves Message empty, so ErrorMessage falls back to the
// code's default message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// E wraps err as an *Error from op with code, keeping err as the cause.
// Its Message is empty: clients are told the code's default message.
func E(op string, code Code, err error) *Error {
	return &Error{Op: op, Code: code, Err: err}
}

// WithOp returns a copy of e whose Op, where it happened, is op.
func (e *Error) WithOp(op string) *Error {
	c := *e
	c.Op = op
	return &c
}

// Wrap returns a copy of e whose cause (Err, never shown to clients) is
// err.
func (e *Error) Wrap(err error) *Error {
	c := *e
	c.Err = err
	return &c
}

// Error implements error; it includes the cause, so it is for logs only.
func (e *Error) Error() string {
	var s string
	if e.Op != "" {
		s = e.Op + ": "
	}
	if e.Message != "" {
		s += e.Message
	} else {
		s += string(e.Code)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause so errors.Is and errors.As see through an Error.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of the outermost *Error in err's chain that has
// one, CodeInternal for any other non-nil error, and "" for nil. Unknown
// errors are internal on purpose: only errors we classified may say more.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	for errors.As(err, &e) {
		if e.Code != "" {
			return e.Code
		}
		if e.Err == nil {
			break
		}
		err = e.Err
	}
	return CodeInternal
}

// ErrorMessage returns a message safe to show a client: the Message of the
// first *Error that has one, unless the error is internal, whose details
// stay in the logs.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	code := ErrorCode(err)
	if code == CodeInternal {
		return "internal error"
	}
	var e *Error
	for errors.As(err, &e) {
		if e.Message != "" {
			return e.Message
		}
		if e.Err == nil {
			break
		}
		err = e.Err
	}
	return defaultMessages[code]
}

var defaultMessages = map[Code]string{
	CodeInvalid:         "invalid request",
	CodeNotFound:        "not found",
	CodeConflict:        "conflict",
	CodeUnauthenticated: "authentication required",
	CodeForbidden:       "forbidden",
	CodeRateLimited:     "rate limited",
	CodeQuotaExceeded:   "quota exceeded",
	CodeTooLarge:        "request too large",
	CodeUnavailable:     "service unavailable",
	CodeTimeout:         "timed out",
}

// RetryAfter returns the delay the first error in err's chain that knows
// one (a method RetryDelay() time.Duration, as admission refusals and
// quota errors have) asks the client to wait before trying again. Edges
// turn it into Retry-After or gRPC's RetryInfo; ok is false when no error
// in the chain says.
func RetryAfter(err error) (d time.Duration, ok bool) {
	var h interface{ RetryDelay() time.Duration }
	if errors.As(err, &h) {
		return h.RetryDelay(), true
	}
	return 0, false
}
