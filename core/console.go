package core

import (
	"context"
	"time"
)

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

// ConsoleStore is what the console reads of one tenant's state (its
// decisions, extauthz's, through decisionlog.Reader). Every
// method reads only tenant's rows and returns an *Error: CodeInvalid for a
// tenant that is not a UUID, CodeUnavailable when the store cannot be
// reached.
type ConsoleStore interface {
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
