package postgres

import (
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/core"
)

var _ core.TenantBatcher = (*DB)(nil)

// QueryJSONBatch implements core.TenantBatcher. The statements are sent as
// one pipeline ending in one Sync, which PostgreSQL runs as one implicit
// transaction: set_config(..., true) is as transaction-local as in
// InTenant, a failure rolls everything back, and a read costs one round
// trip instead of four (begin, tenant, query, commit).
func (db *DB) QueryJSONBatch(ctx context.Context, tenant string, stmts []core.Statement) ([][]byte, error) {
	const op = "postgres.QueryJSONBatch"
	if !isUUID(tenant) {
		return nil, &core.Error{Op: op, Code: core.CodeInvalid, Message: "tenant must be a UUID"}
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(stmts)+1)}
	// Read-only: a read request cannot write, whatever a view calls. The
	// settings go in one statement: each statement of the pipeline costs
	// a bind, an execute and their replies on both sides.
	args := []any{tenant}
	if db.timeout > 0 {
		args = append(args, strconv.FormatInt(db.timeout.Milliseconds(), 10))
	}
	b.Queue(db.readSetup, args...)
	for _, s := range stmts {
		b.Queue(s.SQL, s.Args...)
	}
	br := db.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if db.passwordChanged(err) {
		// Refused at connect: nothing ran (see begin).
		br.Close()
		br = db.pool.SendBatch(ctx, b)
		_, err = br.Exec()
	}
	defer br.Close()
	if err != nil {
		return nil, mapError(op, err)
	}
	out := make([][]byte, len(stmts))
	for i := range stmts {
		var v []byte
		if err := br.QueryRow().Scan(&v); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			return nil, mapError(op, err)
		}
		out[i] = v
	}
	if err := br.Close(); err != nil {
		return nil, mapError(op, err)
	}
	return out, nil
}

// readSetup is the statement that opens a read: the tenant, read-only, and
// the statement timeout and plan cache mode when configured.
func readSetup(timeout bool, generic bool, more []string) string {
	s := "select set_config('fraise.tenant', $1, true)"
	for _, n := range more {
		s += ", set_config('" + n + "', $1, true)"
	}
	s += ", set_config('transaction_read_only', 'on', true)"
	if timeout {
		s += ", set_config('statement_timeout', $2, true)"
	}
	if generic {
		s += ", set_config('plan_cache_mode', 'force_generic_plan', true)"
	}
	return s
}
