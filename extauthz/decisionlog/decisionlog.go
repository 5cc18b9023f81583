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
}

// Store keeps authorization decisions for audit: the port extauthz writes
// its decisions through (adapters/postgres.Decisions).
type Store interface {
	// RecordDecisions stores ds in one batch. It returns an *core.Error with
	// CodeUnavailable when the store cannot be reached; nothing of the
	// batch is stored then.
	RecordDecisions(ctx context.Context, ds []Decision) error
}
