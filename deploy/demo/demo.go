// Package demo is the demo application `make run` serves: its database
// schema with row-level security, its data (two tenants with fixed ids) and
// its GraphQL schema.
package demo

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The demo's files.
var (
	//go:embed schema.sql
	SQL string
	//go:embed seed.sql
	Seed string
	//go:embed schema.graphql
	SDL string
)

// observe has observers capture the posts' changes (into
// fraise.observer_outbox), so that `fraise dev --demo`'s rule has events
// to match. It runs after the seed: the demo's own posts are no events.
const observe = "SELECT fraise.observe_table('public.posts')"

// The demo tenants' ids.
const (
	TenantAcme   = "11111111-1111-4111-8111-111111111111"
	TenantGlobex = "22222222-2222-4222-8222-222222222222"
)

// Apply creates the demo schema and data at adminURL (after the migrations)
// and grants appRole what the core needs: reading the views, and through
// them the tables, which row-level security then filters.
func Apply(ctx context.Context, adminURL, appRole string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	role := pgx.Identifier{appRole}.Sanitize()
	grants := "GRANT SELECT ON public.users, public.posts, public.v_user, public.v_post, public.tv_post TO " + role +
		"; GRANT INSERT ON public.posts TO " + role + "; GRANT EXECUTE ON FUNCTION public.fn_create_post(jsonb) TO " + role
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range []string{SQL, Seed, observe, grants} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		}
		return nil
	})
}
