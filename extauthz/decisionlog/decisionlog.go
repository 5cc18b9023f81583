// Package decisionlog is extauthz's audit log of authorization decisions:
// the record of one decision and the port that stores them, which the
// extauthz server writes in batches off the request path.
package decisionlog

import (
	"context"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// Decision is one authorization decision, as the audit log keeps it.
type Decision struct {
	ID             string
	RequestID      string
	At             time.Time
	Subject        string
	Tenant         string
	Kind           core.PrincipalKind
	Operation      string
	OperationName  string
	Allow          bool
	Status         int
	Reason         string
	PolicyRevision string
	Latency        time.Duration
	// Method and Path are the request's (the path without its query).
	Method, Path string
	// TraceID is the W3C trace id of the request (32 hex digits), "" when
	// it was not traced.
	TraceID string
	// Input is the policy's input document for the request, credentials
	// removed, as JSON; nil when the request was refused before the policy
	// was asked. The console's playground replays it against a draft.
	Input []byte
}

// Store keeps authorization decisions for audit: the port extauthz writes
// its decisions through (adapters/postgres.Decisions).
type Store interface {
	// RecordDecisions stores ds in one batch. It returns an *core.Error with
	// CodeUnavailable when the store cannot be reached; nothing of the
	// batch is stored then.
	RecordDecisions(ctx context.Context, ds []Decision) error
}

// Filter selects decisions of the audit log for the console. Zero values
// select everything.
type Filter struct {
	Subject string
	// Operation matches the operation type or the operation's name.
	Operation string
	// Allow, when set, selects allowed (true) or refused (false) decisions.
	Allow *bool
	// Reason selects decisions whose reason contains it, ignoring case.
	Reason       string
	Since, Until time.Time
	// Limit caps the answer (default 100, at most 1000).
	Limit int
	// WithInput selects only decisions that kept the policy's input, the
	// ones a draft policy can be replayed on.
	WithInput bool
	// ExcludeConsole leaves out the console's own requests (paths under
	// /console), which would otherwise crowd out the traffic a security
	// team looks for.
	ExcludeConsole bool
}

// Reader reads the decisions of one tenant back, for the console's
// decision screen and the policy playground's replay. It returns a
// *core.Error: CodeInvalid for a tenant that is not a UUID,
// CodeUnavailable when the store cannot be reached.
type Reader interface {
	// Decisions returns tenant's decisions matching f, newest first.
	Decisions(ctx context.Context, tenant string, f Filter) ([]Decision, error)
}
