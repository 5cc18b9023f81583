package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MigrateOptions configures Migrate.
type MigrateOptions struct {
	// AppRole is the role the core connects as (default fraise_app). It is
	// created LOGIN NOSUPERUSER NOBYPASSRLS: superusers and table owners
	// bypass row-level security, which is why the core never connects as
	// the role that runs migrations.
	AppRole string
	// AppPassword, when set, becomes the role's password, sent as a
	// SCRAM-SHA-256 verifier computed here, so the password itself never
	// reaches the server's statement log.
	AppPassword string
	Logger      *slog.Logger
}

// migrationLock is the advisory lock key that serialises concurrent
// migrators (several replicas starting at once).
const migrationLock = 0x66726169 // "frai"

// Migrate applies the embedded migrations in order, each once, in its own
// transaction, as the schema owner at adminURL.
func Migrate(ctx context.Context, adminURL string, o MigrateOptions) error {
	if o.AppRole == "" {
		o.AppRole = "fraise_app"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", migrationLock)

	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS fraise;
		CREATE TABLE IF NOT EXISTS fraise.schema_migrations (
			version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := ensureRole(ctx, conn, o.AppRole, o.AppPassword); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		var done bool
		if err := conn.QueryRow(ctx, "select exists(select 1 from fraise.schema_migrations where version = $1)", version).Scan(&done); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if done {
			continue
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "insert into fraise.schema_migrations(version) values ($1)", version)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
		o.Logger.Info("applied migration", "version", version)
	}
	role := pgx.Identifier{o.AppRole}.Sanitize()
	if _, err := conn.Exec(ctx, "GRANT USAGE ON SCHEMA fraise TO "+role+"; GRANT SELECT ON fraise.tenants TO "+role); err != nil {
		return fmt.Errorf("migrate: grants: %w", err)
	}
	return grantFunctions(ctx, conn, o.AppRole)
}

// ensureRole creates the application role when missing and makes sure it
// cannot bypass row-level security even if someone altered it.
func ensureRole(ctx context.Context, conn *pgx.Conn, role, password string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "select exists(select 1 from pg_roles where rolname = $1)", role).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	id := pgx.Identifier{role}.Sanitize()
	if !exists {
		// Roles belong to the cluster: two migrations of databases of one
		// cluster (or two replicas starting at once) may both find the
		// role missing; the one that loses finds it made, which is what
		// it wanted (duplicate_object, or the catalog's unique index).
		var pgErr *pgconn.PgError
		if _, err := conn.Exec(ctx, "CREATE ROLE "+id+" LOGIN"); err != nil &&
			!(errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505")) {
			return fmt.Errorf("migrate: create role %s: %w", role, err)
		}
	}
	if err := alterRole(ctx, conn, "ALTER ROLE "+id+" NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB"); err != nil {
		return fmt.Errorf("migrate: alter role %s: %w", role, err)
	}
	if password != "" {
		secret := password
		if isASCII(password) {
			// PostgreSQL normalises a non-ASCII password (SASLprep) before
			// deriving its verifier; an ASCII one is its own normal form.
			v, err := scramVerifier(password, rand.Reader)
			if err != nil {
				return fmt.Errorf("migrate: set password of %s: %w", role, err)
			}
			secret = v
		}
		// ALTER ROLE takes no parameters; quote the literal safely instead.
		if err := alterRole(ctx, conn, "ALTER ROLE "+id+" PASSWORD "+quoteLiteral(secret)); err != nil {
			return fmt.Errorf("migrate: set password of %s: %w", role, err)
		}
	}
	return nil
}

// alterRole runs an ALTER ROLE, again when another session altered the
// same role at the same moment: PostgreSQL then refuses one of them with
// "tuple concurrently updated" (XX000) instead of waiting, and migrations
// of a cluster's databases run side by side alter the one role they
// share, to the same end.
func alterRole(ctx context.Context, conn *pgx.Conn, sql string) error {
	var err error
	for try := range 10 {
		_, err = conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "XX000" || !strings.Contains(pgErr.Message, "concurrently updated") {
			return err
		}
		// Apart by a random few milliseconds, growing, so that the
		// sessions that collided do not collide again.
		select {
		case <-time.After(time.Duration(mrand.IntN(5*(try+1))+1) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// scramIterations is PostgreSQL's own default (scram_iterations).
const scramIterations = 4096

// scramVerifier returns password's SCRAM-SHA-256 verifier in the form
// PostgreSQL stores and accepts in place of a password (RFC 5802, RFC
// 7677): SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
// What the server learns is what it would have stored anyway.
func scramVerifier(password string, random io.Reader) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(random, salt); err != nil {
		return "", err
	}
	return scramVerifierSalted(password, salt)
}

// scramVerifierSalted is scramVerifier with the salt given.
func scramVerifierSalted(password string, salt []byte) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
