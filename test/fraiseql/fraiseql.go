// Package fraiseql is a database in FraiseQL's conventions for Fraise's
// tests: FraiseQL's documented blog and e-commerce examples, written
// anew, with two tenants' data. The conformance suite beside it runs the
// same GraphQL operations through Fraise and compares every field with the
// answers kept in testdata.
package fraiseql

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
)

//go:embed testdata/*.sql
var files embed.FS

// The tenants of the seed data.
const (
	TenantAcme   = "11111111-1111-4111-8111-111111111111"
	TenantGlobex = "22222222-2222-4222-8222-222222222222"
)

// TenantSetting is the setting FraiseQL's row-level security reads.
const TenantSetting = "app.tenant_id"

// Apply creates the example database at adminURL (a database Fraise's
// migrations ran on, for fraise.audit) and grants appRole what FraiseQL's
// own role would have: reading every view and table, writing the tables
// the functions write.
func Apply(ctx context.Context, adminURL, appRole string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("fraiseql: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	role := pgx.Identifier{appRole}.Sanitize()
	grants := "GRANT USAGE ON SCHEMA app TO " + role +
		"; GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + role +
		"; GRANT INSERT, UPDATE, DELETE ON tb_post, tb_comment, tb_order, tb_order_item, tb_product TO " + role +
		"; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO " + role
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, f := range []string{"common.sql", "blog.sql", "ecommerce.sql", "seed.sql"} {
			b, err := files.ReadFile("testdata/" + f)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(b)); err != nil {
				return fmt.Errorf("fraiseql: %s: %w", f, err)
			}
		}
		if _, err := tx.Exec(ctx, grants); err != nil {
			return fmt.Errorf("fraiseql: %w", err)
		}
		return nil
	})
}
