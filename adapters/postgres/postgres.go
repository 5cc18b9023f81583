// Package postgres is the PostgreSQL adapter: the core's tenant-scoped
// transactions (core.TenantDB) over a pgx pool, and Fraise's migrations.
// Every request runs in one transaction that first sets fraise.tenant, the
// setting row-level security policies compare tenant_id with.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/core"
)

// Options tunes the pool.
type Options struct {
	MaxConns int32
	// StatementTimeout bounds every statement of a request's transaction.
	StatementTimeout time.Duration
	// GenericPlans sets plan_cache_mode to force_generic_plan in each read
	// (QueryJSONBatch). The engine's statements are prepared once and carry
	// every value as a parameter, and a list's LIMIT $n makes PostgreSQL's
	// default (auto) judge the generic plan costlier than a custom one, so
	// it plans every execution anew: about a quarter of the backend's CPU
	// on the benchmark's read, for the same plan.
	GenericPlans bool
	Logger       *slog.Logger
	// TracerProvider, when set, makes a client span of each statement run
	// within a span (none for statements outside any trace), and has each
	// writing transaction record its trace context for the observer jobs
	// its changes cause.
	TracerProvider trace.TracerProvider
}

// DB is a pool of connections as the core's application role.
type DB struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	// readSetup is QueryJSONBatch's first statement.
	readSetup string
	log       *slog.Logger
}

var _ core.TenantDB = (*DB)(nil)

// Open connects to url (it does not wait for the database: Ping does).
func Open(ctx context.Context, url string, o Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider != nil {
		cfg.ConnConfig.Tracer = newTracer(o.TracerProvider, cfg.ConnConfig)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &DB{pool: pool, timeout: o.StatementTimeout, readSetup: readSetup(o.StatementTimeout > 0, o.GenericPlans), log: o.Logger}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// Ping reports whether the database answers, for readiness checks.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return mapError("postgres.ping", err)
	}
	return nil
}

// InTenant implements core.TenantDB.
func (db *DB) InTenant(ctx context.Context, tenant string, fn func(ctx context.Context, q core.Querier) error) (err error) {
	const op = "postgres.InTenant"
	if !isUUID(tenant) {
		return &core.Error{Op: op, Code: core.CodeInvalid, Message: "tenant must be a UUID"}
	}
	// The trace context of the request, recorded with the transaction's
	// outbox events (migration 0012): the observer jobs they cause continue
	// the trace.
	tp := traceparent(ctx)
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return mapError(op, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// Transaction-local (is_local = true): the setting cannot leak to the
	// next request that borrows this pooled connection.
	// The settings in one statement: one round trip less.
	_, err = tx.Exec(ctx, txSetup(db.timeout > 0, tp != ""), txArgs(tenant, db.timeout, tp)...)
	if err != nil {
		return mapError(op, err)
	}
	if err := fn(ctx, querier{tx}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return mapError(op, err)
	}
	return nil
}

// txSetup is InTenant's first statement: the tenant, and the statement
// timeout and trace context when there are.
func txSetup(timeout, traced bool) string {
	s := "select set_config('fraise.tenant', $1, true)"
	n := 1
	if timeout {
		n++
		s += ", set_config('statement_timeout', $" + strconv.Itoa(n) + ", true)"
	}
	if traced {
		n++
		s += ", set_config('fraise.traceparent', $" + strconv.Itoa(n) + ", true)"
	}
	return s
}

func txArgs(tenant string, timeout time.Duration, traceparent string) []any {
	args := []any{tenant}
	if timeout > 0 {
		args = append(args, strconv.FormatInt(timeout.Milliseconds(), 10))
	}
	if traceparent != "" {
		args = append(args, traceparent)
	}
	return args
}

type querier struct{ tx pgx.Tx }

// QueryJSON implements core.Querier.
func (q querier) QueryJSON(ctx context.Context, sql string, args ...any) ([]byte, error) {
	var b []byte
	if err := q.tx.QueryRow(ctx, sql, args...).Scan(&b); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		return nil, mapError("postgres.QueryJSON", err)
	}
	return b, nil
}

// mapError classifies a database error by SQLSTATE class, never by message
// text, and gives clients a message that reveals nothing of the schema.
func mapError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &core.Error{Op: op, Code: core.CodeTimeout, Err: err}
	}
	if errors.Is(err, context.Canceled) {
		return &core.Error{Op: op, Code: core.CodeUnavailable, Message: "request cancelled", Err: err}
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case pg.Code == SQLStateQuotaExceeded:
			return quotaError(op, pg, err)
		case pg.Code == "57014": // query_canceled: statement_timeout
			return &core.Error{Op: op, Code: core.CodeTimeout, Message: "statement timed out", Err: err}
		case pg.Code == "23505": // unique_violation
			return &core.Error{Op: op, Code: core.CodeConflict, Message: "already exists", Err: err}
		case pg.Code == "42501": // insufficient_privilege, including row-level security
			return &core.Error{Op: op, Code: core.CodeForbidden, Message: "not allowed", Err: err}
		case len(pg.Code) == 5 && (pg.Code[:2] == "22" || pg.Code[:2] == "23"):
			return &core.Error{Op: op, Code: core.CodeInvalid, Message: "invalid value", Err: err}
		case len(pg.Code) == 5 && (pg.Code[:2] == "08" || pg.Code[:2] == "53" || pg.Code[:2] == "57"):
			return &core.Error{Op: op, Code: core.CodeUnavailable, Err: err}
		}
		return &core.Error{Op: op, Code: core.CodeInternal, Err: err}
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, pgx.ErrTxClosed) {
		return &core.Error{Op: op, Code: core.CodeUnavailable, Err: err}
	}
	return &core.Error{Op: op, Code: core.CodeInternal, Err: err}
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
