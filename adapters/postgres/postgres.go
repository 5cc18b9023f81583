// Package postgres is the PostgreSQL adapter: the core's tenant-scoped
// transactions (core.TenantDB) over a pgx pool, and Fraise's migrations.
// Every request runs in one transaction that first sets fraise.tenant, the
// setting row-level security policies compare tenant_id with.
package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strconv"
	"strings"
	"sync/atomic"
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
	// StatementTimeout bounds every statement of a request's transaction
	// (see WithStatementTimeout for one of the capabilities').
	StatementTimeout time.Duration
	// GenericPlans sets plan_cache_mode to force_generic_plan in each read
	// (QueryJSONBatch). The engine's statements are prepared once and carry
	// every value as a parameter, and a list's LIMIT $n makes PostgreSQL's
	// default (auto) judge the generic plan costlier than a custom one, so
	// it plans every execution anew: about a quarter of the backend's CPU
	// on the benchmark's read, for the same plan.
	GenericPlans bool
	// TenantSettings are more settings each transaction sets to the
	// tenant, besides fraise.tenant (which Fraise's own tables' policies
	// and the audit log read): the names an existing database's policies
	// read, such as FraiseQL's app.tenant_id. Each must be a dotted
	// custom setting name (ValidSettingName).
	TenantSettings []string
	// SubjectSettings are more settings SetSubject sets to the subject,
	// besides fraise.subject: the names an existing database's functions
	// read (app.user_id, say). Each must be a dotted custom setting name
	// (ValidSettingName).
	SubjectSettings []string
	Logger          *slog.Logger
	// TracerProvider, when set, makes a client span of each statement run
	// within a span (none for statements outside any trace), and has each
	// writing transaction record its trace context for the observer jobs
	// its changes cause.
	TracerProvider trace.TracerProvider

	// TLS, when set, returns the TLS configuration of each new
	// connection, asked anew each time so that renewed certificates and
	// CAs reach the next connection: connections are then TLS only, the
	// server verified in full (its certificate against the
	// configuration's roots, its name against the configuration's
	// ServerName or else the URL's host, as sslmode=verify-full), with
	// no fallback to plaintext. The URL may set sslmode only to
	// verify-full.
	TLS func() *tls.Config
	// Password, when set, returns the password of each new connection,
	// overriding the URL's (unless it returns ""), and, during a rotation,
	// the one it replaced ("" when none). The database and the file holding the password are
	// never changed at the same instant: while a previous password is
	// given, a new connection the server refuses with the current one
	// (invalid_password) is made with the previous one instead, until
	// the server accepts the current one. So the new password can be
	// written first and ALTER ROLE run after, without a failed request.
	Password func() (current, previous string)
	// MaxConnLifetime closes a connection once it has been open this long
	// (with up to a tenth more, so they do not all close at once), when
	// it is next idle; pgx's default (an hour) when zero. It bounds how
	// long connections made with a rotated credential live on.
	MaxConnLifetime time.Duration
}

// DB is a pool of connections as the core's application role.
type DB struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	// generic and tenantSettings are Options.GenericPlans and
	// Options.TenantSettings, which the setup statements are built from.
	generic        bool
	tenantSettings []string
	// readSetup is QueryJSONBatch's first statement.
	readSetup string
	log       *slog.Logger
	// setup is InTenant's first statement, without and with the
	// request's trace context (setup[1]): built once, not per request.
	setup [2]string
	// subjectSetup is SetSubject's statement.
	subjectSetup string
	// subjectSettings are Options.SubjectSettings; writeSetup is
	// ExecJSONBatch's first statement, by [traced][with a subject].
	subjectSettings []string
	writeSetup      [2][2]string
	// accepted is the last current password (Options.Password) a
	// connection was made with: no need to try it again. A pointer, as
	// the DBs WithStatementTimeout returns share it with db.
	accepted *atomic.Pointer[string]
	// rotating reports whether a password rotation is under way
	// (Options.Password gives a previous password besides the current
	// one); nil without Options.Password.
	rotating func() bool
}

var _ core.TenantDB = (*DB)(nil)

// ErrSSLMode is returned by Open for a URL whose sslmode is weaker than
// verify-full while Options.TLS is set: the URL would ask for less than
// the TLS configuration promises.
var ErrSSLMode = errors.New("postgres: with TLS configured, the URL's sslmode may only be verify-full (or left out)")

// Open connects to url (it does not wait for the database: Ping does).
func Open(ctx context.Context, url string, o Options) (*DB, error) {
	for _, n := range o.TenantSettings {
		if !ValidSettingName(n) {
			return nil, fmt.Errorf("postgres: tenant setting %q is not a custom setting name (prefix.name, lower case)", n)
		}
	}
	for _, n := range o.SubjectSettings {
		if !ValidSettingName(n) {
			return nil, fmt.Errorf("postgres: subject setting %q is not a custom setting name (prefix.name, lower case)", n)
		}
	}
	if o.TLS != nil {
		if m := sslMode(url); m != "" && m != "verify-full" {
			return nil, fmt.Errorf("%w, got sslmode=%s", ErrSSLMode, m)
		}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.MaxConnLifetime > 0 {
		cfg.MaxConnLifetime = o.MaxConnLifetime
		cfg.MaxConnLifetimeJitter = o.MaxConnLifetime / 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider != nil {
		cfg.ConnConfig.Tracer = newTracer(o.TracerProvider, cfg.ConnConfig)
	}
	db := &DB{generic: o.GenericPlans, tenantSettings: o.TenantSettings, log: o.Logger,
		subjectSetup: subjectSetup(o.SubjectSettings), subjectSettings: o.SubjectSettings, accepted: new(atomic.Pointer[string])}
	db.setTimeout(o.StatementTimeout)
	if o.TLS != nil {
		// TLS only: sslmode=prefer's plaintext fallbacks (the default
		// when the URL sets no sslmode) are never tried.
		cfg.ConnConfig.TLSConfig = o.TLS()
		cfg.ConnConfig.Fallbacks = tlsOnly(cfg.ConnConfig.Fallbacks, o.TLS)
	}
	if o.Password != nil {
		db.rotating = func() bool { cur, prev := o.Password(); return prev != "" && prev != cur }
	}
	if o.TLS != nil || o.Password != nil {
		cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			return db.beforeConnect(ctx, cc, o)
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.pool = pool
	return db, nil
}

// setTimeout makes d the statement timeout of db's transactions (0: none),
// building the statements that open them.
func (db *DB) setTimeout(d time.Duration) {
	db.timeout = d
	db.readSetup = readSetup(d > 0, db.generic, db.tenantSettings)
	db.setup = [2]string{txSetup(d > 0, false, db.tenantSettings), txSetup(d > 0, true, db.tenantSettings)}
	for traced := range 2 {
		for subject := range 2 {
			db.writeSetup[traced][subject] = writeSetup(d > 0, traced == 1, subject == 1, db.tenantSettings, db.subjectSettings)
		}
	}
}

// WithStatementTimeout returns a DB on db's pool (closing either closes
// both) whose transactions bound each statement by d instead (0: none):
// how one capability's timeout (GraphQL's server.statement_timeout) differs
// from the database's, set where every other setting of the transaction
// is, in its first statement, rather than by the capability.
func (db *DB) WithStatementTimeout(d time.Duration) *DB {
	c := *db
	c.setTimeout(d)
	return &c
}

// beforeConnect sets a new connection's TLS configuration and password
// from o's current ones.
func (db *DB) beforeConnect(ctx context.Context, cc *pgx.ConnConfig, o Options) error {
	if o.TLS != nil {
		cc.TLSConfig = forHost(o.TLS(), cc.Host)
		cc.Fallbacks = tlsOnly(cc.Fallbacks, o.TLS)
	}
	if o.Password == nil {
		return nil
	}
	cur, prev := o.Password()
	if cur == "" {
		return nil
	}
	cc.Password = cur
	if prev == "" || prev == cur {
		return nil
	}
	if p := db.accepted.Load(); p != nil && *p == cur {
		return nil
	}
	// A rotation is under way and the current password has not yet been
	// seen accepted: try it, and fall back to the previous one if the
	// server does not know it yet.
	probe, err := pgconn.ConnectConfig(ctx, cc.Config.Copy())
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		_ = probe.Close(ctx)
		db.accepted.Store(&cur)
	case errors.As(err, &pgErr) && pgErr.Code == sqlStateInvalidPassword:
		db.log.Info("database password not accepted yet; connecting with the previous one until it is")
		cc.Password = prev
	}
	// Any other failure is the real connection's to report.
	return nil
}

// begin begins a transaction. While a password rotation is under way, a
// new connection refused for its password is made once more: the server
// may have taken the new password (ALTER ROLE) between beforeConnect's
// probe, which found it unknown, and the connection then made with the
// previous one; the next probe finds the new one accepted.
func (db *DB) begin(ctx context.Context, o pgx.TxOptions) (pgx.Tx, error) {
	tx, err := db.pool.BeginTx(ctx, o)
	if db.passwordChanged(err) {
		tx, err = db.pool.BeginTx(ctx, o)
	}
	return tx, err
}

// passwordChanged reports whether err is a new connection refused for its
// password while a rotation is under way: nothing was sent, and the
// request may be sent again on a connection of the next probe's password.
func (db *DB) passwordChanged(err error) bool {
	var pgErr *pgconn.PgError
	if err == nil || db.rotating == nil || !db.rotating() || !errors.As(err, &pgErr) || pgErr.Code != sqlStateInvalidPassword {
		return false
	}
	db.log.Info("database password changed while connecting; connecting again")
	return true
}

// forHost returns tc verifying host unless it names a server itself.
func forHost(tc *tls.Config, host string) *tls.Config {
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	return tc
}

// tlsOnly returns the fallbacks (other hosts of a multi-host URL, and
// sslmode's plaintext attempts) that use TLS, each with a configuration
// of newTLS for its host.
func tlsOnly(fbs []*pgconn.FallbackConfig, newTLS func() *tls.Config) []*pgconn.FallbackConfig {
	var out []*pgconn.FallbackConfig
	for _, fb := range fbs {
		if fb.TLSConfig == nil {
			continue
		}
		out = append(out, &pgconn.FallbackConfig{Host: fb.Host, Port: fb.Port, TLSConfig: forHost(newTLS(), fb.Host)})
	}
	return out
}

// sqlStateInvalidPassword is invalid_password: the server refused the
// password.
const sqlStateInvalidPassword = "28P01"

// sslMode returns the sslmode a connection string sets, "" when none: the
// query parameter of a postgres:// URL, or the keyword of a key=value
// string.
func sslMode(conn string) string {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := neturl.Parse(conn)
		if err != nil {
			return ""
		}
		return u.Query().Get("sslmode")
	}
	for _, f := range strings.Fields(conn) {
		if v, ok := strings.CutPrefix(f, "sslmode="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// ValidSettingName reports whether name is a custom setting PostgreSQL
// accepts in set_config, which Fraise writes into SQL: a lower-case
// identifier, a dot, and another (app.tenant_id).
func ValidSettingName(name string) bool {
	prefix, rest, ok := strings.Cut(name, ".")
	if !ok || prefix == "" || rest == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == '.' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return name[0] < '0' || name[0] > '9'
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
		return core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
	}
	// The trace context of the request, recorded with the transaction's
	// outbox events (migration 0012): the observer jobs they cause continue
	// the trace.
	tp := traceparent(ctx)
	tx, err := db.begin(ctx, pgx.TxOptions{})
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
	_, err = tx.Exec(ctx, db.setup[traced(tp)], txArgs(tenant, db.timeout, tp)...)
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

// traced is db.setup's index for the trace context tp ("" for none).
func traced(tp string) int {
	if tp == "" {
		return 0
	}
	return 1
}

// txSetup is InTenant's first statement: the tenant, and the statement
// timeout and trace context when there are.
func txSetup(timeout, traced bool, more []string) string {
	s := "select set_config('fraise.tenant', $1, true)"
	for _, n := range more {
		s += ", set_config('" + n + "', $1, true)"
	}
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
		return core.E(op, core.CodeTimeout, err)
	}
	if errors.Is(err, context.Canceled) {
		return core.Errorf(core.CodeUnavailable, "request cancelled").WithOp(op).Wrap(err)
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case pg.Code == SQLStateQuotaExceeded:
			return quotaError(op, pg, err)
		case pg.Code == "57014": // query_canceled: statement_timeout
			return core.Errorf(core.CodeTimeout, "statement timed out").WithOp(op).Wrap(err)
		case pg.Code == "23505": // unique_violation
			return core.Errorf(core.CodeConflict, "already exists").WithOp(op).Wrap(err)
		case pg.Code == "42501": // insufficient_privilege, including row-level security
			return core.Errorf(core.CodeForbidden, "not allowed").WithOp(op).Wrap(err)
		case len(pg.Code) == 5 && (pg.Code[:2] == "22" || pg.Code[:2] == "23"):
			return core.Errorf(core.CodeInvalid, "invalid value").WithOp(op).Wrap(err)
		case len(pg.Code) == 5 && (pg.Code[:2] == "08" || pg.Code[:2] == "53" || pg.Code[:2] == "57"):
			return core.E(op, core.CodeUnavailable, err)
		}
		return core.E(op, core.CodeInternal, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, pgx.ErrTxClosed) {
		return core.E(op, core.CodeUnavailable, err)
	}
	return core.E(op, core.CodeInternal, err)
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

// acquire takes a connection from the pool, once more when a new one was
// refused for a password the server changed while it connected
// (passwordChanged): every statement the adapter sends outside a
// transaction goes through it, exec, query or queryRow, so that a
// rotation fails none of them.
func (db *DB) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	c, err := db.pool.Acquire(ctx)
	if db.passwordChanged(err) {
		c, err = db.pool.Acquire(ctx)
	}
	return c, err
}

// exec runs sql on a connection of acquire's.
func (db *DB) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c, err := db.acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer c.Release()
	return c.Exec(ctx, sql, args...)
}

// query runs sql on the pool: its rows hold their connection until
// closed. A new connection refused for a changed password is made again;
// nothing was sent on it.
func (db *DB) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := db.pool.Query(ctx, sql, args...)
	if db.passwordChanged(err) {
		rows, err = db.pool.Query(ctx, sql, args...)
	}
	return rows, err
}

// queryRow runs sql on a connection of acquire's, released once the row
// is scanned.
func (db *DB) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c, err := db.acquire(ctx)
	if err != nil {
		return errRow{err}
	}
	return releasingRow{c: c, row: c.QueryRow(ctx, sql, args...)}
}

// errRow is a row whose Scan returns the error that kept it from being read.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// releasingRow releases its connection when scanned, as a pool's row does.
type releasingRow struct {
	c   *pgxpool.Conn
	row pgx.Row
}

func (r releasingRow) Scan(dest ...any) error {
	defer r.c.Release()
	return r.row.Scan(dest...)
}

// sendBatch sends b and reads its first statement's result, the whole
// batch sent once more when a new connection was refused for a changed
// password (nothing ran). The caller reads the rest and closes br.
func (db *DB) sendBatch(ctx context.Context, b *pgx.Batch) (br pgx.BatchResults, err error) {
	br = db.pool.SendBatch(ctx, b)
	_, err = br.Exec()
	if db.passwordChanged(err) {
		br.Close()
		br = db.pool.SendBatch(ctx, b)
		_, err = br.Exec()
	}
	return br, err
}
