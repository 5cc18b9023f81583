package postgres

import (
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/core"
)

var (
	_ core.TenantBatcher = (*DB)(nil)
	_ core.TenantWriter  = (*DB)(nil)
)

// QueryJSONBatch implements core.TenantBatcher. The statements are sent as
// one pipeline ending in one Sync, which PostgreSQL runs as one implicit
// transaction: set_config(..., true) is as transaction-local as in
// InTenant, a failure rolls everything back, and a read costs one round
// trip instead of four (begin, tenant, query, commit).
func (db *DB) QueryJSONBatch(ctx context.Context, tenant string, stmts []core.Statement) ([][]byte, error) {
	const op = "postgres.QueryJSONBatch"
	if !isUUID(tenant) {
		return nil, core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
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
	return db.sendJSONBatch(ctx, op, b, stmts)
}

// ExecJSONBatch implements core.TenantWriter in two round trips where
// InTenant takes five (begin, the settings, the subject, the statement,
// commit): begin, the settings and every statement in one pipeline, then
// commit (or rollback) once accept has seen the values, since a value may
// still be refused (too large) and nothing may then be written.
func (db *DB) ExecJSONBatch(ctx context.Context, tenant, subject string, stmts []core.Statement, accept func([][]byte) error) (err error) {
	const op = "postgres.ExecJSONBatch"
	if !isUUID(tenant) {
		return core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
	}
	// The request's trace context goes with the transaction's outbox
	// events, as in InTenant.
	tp := traceparent(ctx)
	args := txArgs(tenant, db.timeout, tp)
	withSubject := 0
	if subject != "" {
		withSubject = 1
		args = append(args, subject)
	}
	c, err := db.acquire(ctx)
	if err != nil {
		return mapError(op, err)
	}
	defer c.Release() // a connection left inside a transaction is closed, not reused
	open := false
	defer func() {
		if err != nil && open {
			_, _ = c.Exec(context.WithoutCancel(ctx), "rollback")
		}
	}()
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(stmts)+2)}
	b.Queue("begin")
	b.Queue(db.writeSetup[traced(tp)][withSubject], args...)
	for _, s := range stmts {
		b.Queue(s.SQL, s.Args...)
	}
	br := c.SendBatch(ctx, b)
	_, err = br.Exec() // begin
	open = err == nil
	if err == nil {
		_, err = br.Exec() // the settings
	}
	vals, err := readJSONBatch(op, br, err, len(stmts))
	if err != nil {
		return err
	}
	if err = accept(vals); err != nil {
		return err
	}
	if _, err = c.Exec(ctx, "commit"); err != nil {
		return mapError(op, err)
	}
	open = false
	return nil
}

// sendJSONBatch sends b, its setup statement queued, with stmts after it,
// and reads each statement's single JSON value.
func (db *DB) sendJSONBatch(ctx context.Context, op string, b *pgx.Batch, stmts []core.Statement) ([][]byte, error) {
	for _, s := range stmts {
		b.Queue(s.SQL, s.Args...)
	}
	br, err := db.sendBatch(ctx, b)
	return readJSONBatch(op, br, err, len(stmts))
}

// readJSONBatch reads n statements' single JSON values from br, whose
// first statement's result err is, and closes it.
func readJSONBatch(op string, br pgx.BatchResults, err error, n int) ([][]byte, error) {
	defer br.Close()
	if err != nil {
		return nil, mapError(op, err)
	}
	out := make([][]byte, n)
	for i := range n {
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

// writeSetup is the statement that opens a write pipeline: the tenant,
// and the statement timeout, trace context and subject when there are,
// in InTenant's and SetSubject's settings, numbered as txArgs and then the
// subject give them.
func writeSetup(timeout, traced, subject bool, tenantSettings, subjectSettings []string) string {
	s := txSetup(timeout, traced, tenantSettings)
	if !subject {
		return s
	}
	n := 2
	if timeout {
		n++
	}
	if traced {
		n++
	}
	p := "$" + strconv.Itoa(n)
	s += ", set_config('fraise.subject', " + p + ", true)"
	for _, name := range subjectSettings {
		s += ", set_config('" + name + "', " + p + ", true)"
	}
	return s
}
