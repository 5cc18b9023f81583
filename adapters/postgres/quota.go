package postgres

import (
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraise-dev/fraise/core"
)

// SQLStateQuotaExceeded is the SQLSTATE fraise.check_quota and the quota
// counting trigger raise (migration 0005) when a tenant is at its tier's
// limit for a resource. Class FQ is Fraise's own: no PostgreSQL condition
// uses it, so no other error can be mistaken for a quota refusal.
const SQLStateQuotaExceeded = "FQ001"

// quotaError turns a quota refusal into CodeQuotaExceeded. The database's
// message ("quota exceeded: observer_rules (limit 100)") is written for the
// tenant and names only the resource and its limit, so the client sees it.
func quotaError(op string, pg *pgconn.PgError, err error) *core.Error {
	return core.Errorf(core.CodeQuotaExceeded, "%s", pg.Message).WithOp(op).Wrap(err)
}
