package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// grantFunctions calls every fraise.grant_<area>(role name) function the
// migrations define with the application role. A migration cannot name the
// role itself (it is configurable), so one that needs grants defines such a
// function and Migrate runs it, after every migration, idempotently.
func grantFunctions(ctx context.Context, conn *pgx.Conn, role string) error {
	rows, err := conn.Query(ctx, `select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
		where n.nspname = 'fraise' and p.proname like 'grant\_%' and pg_get_function_identity_arguments(p.oid) = 'role name'
		order by p.proname`)
	if err != nil {
		return fmt.Errorf("migrate: grants: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("migrate: grants: %w", err)
	}
	for _, name := range names {
		if _, err := conn.Exec(ctx, "select fraise."+pgx.Identifier{name}.Sanitize()+"($1)", role); err != nil {
			return fmt.Errorf("migrate: grants: fraise.%s: %w", name, err)
		}
	}
	return nil
}
