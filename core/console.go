package core

import (
	"context"
	"time"
)

// DecisionFilter selects decisions of the audit log for the console. Zero
// values select everything.
type DecisionFilter struct {
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

// PersistedOperation is a persisted (or trusted) GraphQL document of a
// tenant, by its SHA-256.
type PersistedOperation struct {
	Hash      string
	Document  string
	CreatedAt time.Time
}

// QuotaUsage is how much of one resource a tenant uses against its tier's
// limit; Limit is -1 when the tier does not limit it.
type QuotaUsage struct {
	Resource string
	Used     int64
	Limit    int64
}

// TenantQuota is a tenant's tier and its usage of every limited resource.
type TenantQuota struct {
	Tier   string
	Quotas []QuotaUsage
}

// RefusalCount counts a tenant's refused requests in one hour: rate
// limited (429) and refused by admission control (503), as the decision
// log recorded them.
type RefusalCount struct {
	Hour      time.Time
	RateLimit int64
	Admission int64
}

// ConsoleStore is what the console reads of one tenant's state. Every
// method reads only tenant's rows and returns an *Error: CodeInvalid for a
// tenant that is not a UUID, CodeUnavailable when the store cannot be
// reached.
type ConsoleStore interface {
	// Decisions returns tenant's decisions matching f, newest first.
	Decisions(ctx context.Context, tenant string, f DecisionFilter) ([]Decision, error)
	// PersistedOperations returns tenant's persisted documents, newest first.
	PersistedOperations(ctx context.Context, tenant string) ([]PersistedOperation, error)
	// Rules returns tenant's observer rules, enabled or not, by name;
	// action secrets are left out.
	Rules(ctx context.Context, tenant string) ([]Rule, error)
	// Quota returns tenant's tier and usage.
	Quota(ctx context.Context, tenant string) (TenantQuota, error)
	// Refusals returns tenant's refusals by hour since since, oldest first.
	Refusals(ctx context.Context, tenant string, since time.Time) ([]RefusalCount, error)
}
