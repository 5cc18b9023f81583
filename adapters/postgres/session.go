package postgres

import (
	"context"

	"github.com/fraise-dev/fraise/core"
)

var (
	_ core.Session  = (*DB)(nil)
	_ core.AuditLog = (*DB)(nil)
)

// SetSubject implements core.Session: fraise.subject and each of
// Options.SubjectSettings, transaction-local (set_config(..., true)), so
// the setting cannot leak to the next request on the pooled connection.
func (db *DB) SetSubject(ctx context.Context, q core.Querier, subject string) error {
	_, err := q.QueryJSON(ctx, db.subjectSetup, subject)
	return err
}

// subjectSetup is SetSubject's statement, built once.
func subjectSetup(more []string) string {
	if len(more) == 0 {
		return "select to_jsonb(set_config('fraise.subject', $1, true))"
	}
	s := "select jsonb_build_array(set_config('fraise.subject', $1, true)"
	for _, n := range more {
		s += ", set_config('" + n + "', $1, true)"
	}
	return s + ")"
}

// MutationsFailed implements core.AuditLog through fraise.audit (migration
// 0002), the function the mutations' own statements write their rows with.
func (db *DB) MutationsFailed(ctx context.Context, tenant, subject string, mutations []string, outcome string) error {
	return db.InTenant(ctx, tenant, func(ctx context.Context, q core.Querier) error {
		for _, m := range mutations {
			if _, err := q.QueryJSON(ctx, "select fraise.audit($1::text, $2::text, null, $3::text)", subject, m, outcome); err != nil {
				return err
			}
		}
		return nil
	})
}
