package postgres

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/test/harness"
)

// TestEnsureRoleConcurrently: migrations of several databases of one
// cluster, started together, all create the application role, a
// cluster-wide object: each finds it missing, one creates it, and the
// others must take it as made rather than fail (as two e2e stacks
// migrating side by side did).
func TestEnsureRoleConcurrently(t *testing.T) {
	pg := harness.SharedPostgres(t)
	ctx := context.Background()
	const n = 8
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		c, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		conns[i] = c
	}
	role := fmt.Sprintf("race_%d", os.Getpid())
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = ensureRole(ctx, c, role, "app-password")
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migration %d: %v", i, err)
		}
	}
}
