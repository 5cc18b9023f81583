package core

import (
	"context"
	"encoding/json"
)

// StoredRules reads a tenant's observer rules as rule management shows
// them, inside the transaction of the request that manages them, so that a
// change is checked against the rule it changes.
type StoredRules interface {
	// StoredRule returns rule id of q's tenant (q being a Querier
	// TenantDB.InTenant gave) as the rule API shows it, a JSON object
	// without the rule's secrets, or nil when the tenant has no such rule.
	// Failures are *Error as Querier.QueryJSON's are.
	StoredRule(ctx context.Context, q Querier, id string) (json.RawMessage, error)
}
