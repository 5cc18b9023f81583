package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/deploy/demo"
)

func runMigrate(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("migrate", env)
	withDemo := fs.Bool("demo", false, "also apply the demo schema and data")
	createDB := fs.Bool("create-db", false, "create the database first when it does not exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadServerConfig(*cfgPath, env, config.CommandMigrate)
	if err != nil {
		return err
	}
	adminURL, err := resolveAdminURL(cfg.Database, env.Getenv)
	if err != nil {
		return err
	}
	// Each step says what it does: on a fresh database the demo takes a
	// few seconds, and a silent command looks hung.
	start := time.Now()
	step := func(what string) {
		fmt.Fprintf(env.Stderr, "fraise migrate: %s (%s)\n", what, time.Since(start).Round(time.Millisecond))
	}
	if *createDB {
		step("creating the database unless it exists")
		if err := ensureDatabase(ctx, adminURL); err != nil {
			return err
		}
	}
	password, err := appPassword(cfg.Database, env.Getenv)
	if err != nil {
		// The schema is migrate's business; the password a convenience.
		log.Warn("database.url unreadable: the app role's password is left as it is", "err", err)
	}
	step("applying the migrations")
	if err := postgres.Migrate(ctx, adminURL, postgres.MigrateOptions{AppRole: cfg.Database.AppRole, AppPassword: password, Logger: log}); err != nil {
		return err
	}
	// Trusted documents go to the database too, so extauthz can resolve a
	// hash-only request for one; the server runs only its own manifest.
	if cfg.Server.TrustedDocuments != "" {
		docs, err := loadTrustedDocuments(cfg.Server.TrustedDocuments)
		if err != nil {
			return err
		}
		if err := postgres.LoadTrustedDocuments(ctx, adminURL, docs); err != nil {
			return err
		}
	}
	if *withDemo {
		step("applying the demo schema and data")
		if err := demo.Apply(ctx, adminURL, cfg.Database.AppRole); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "applied migrations and the demo schema and data in %s\n", time.Since(start).Round(time.Millisecond))
		return nil
	}
	fmt.Fprintf(env.Stdout, "applied migrations in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// resolveAdminURL returns the URL database.admin_url stands for, with
// [database.tls] applied as libpq's parameters (sslmode=verify-full,
// sslrootcert, sslcert, sslkey) unless the URL sets sslmode itself: the
// schema owner may need a client certificate of its own (with PostgreSQL's
// cert authentication the certificate names the user). One-shot commands
// read the files once.
func resolveAdminURL(db config.Database, getenv func(string) string) (string, error) {
	raw, err := config.Resolve(db.AdminURL, getenv)
	if err != nil {
		return "", fmt.Errorf("database.admin_url: %w", err)
	}
	raw = strings.TrimSpace(raw)
	if !db.TLS.Enabled() {
		return raw, nil
	}
	params := [][2]string{{"sslmode", "verify-full"}, {"sslrootcert", db.TLS.CA}}
	if db.TLS.Cert != "" {
		params = append(params, [2]string{"sslcert", db.TLS.Cert}, [2]string{"sslkey", db.TLS.Key})
	}
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("database.admin_url: %w", err)
		}
		q := u.Query()
		if q.Has("sslmode") {
			return raw, nil
		}
		for _, p := range params {
			q.Set(p[0], p[1])
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	if strings.Contains(raw, "sslmode=") {
		return raw, nil
	}
	for _, p := range params {
		raw += " " + p[0] + "='" + strings.ReplaceAll(p[1], "'", `\'`) + "'"
	}
	return raw, nil
}

// appPassword returns the password database.url gives the app role, so
// that `fraise migrate` can set it and the role and the URL the server and
// extauthz connect with never disagree; "" when the URL names another
// user or no password (trust or certificate authentication), or is not a
// postgres:// URL. Only the URL is read: libpq's environment variables
// (PGPASSWORD) are the migrating user's, not the app role's.
func appPassword(db config.Database, getenv func(string) string) (string, error) {
	if db.URL == "" {
		return "", nil
	}
	raw, err := config.Resolve(db.URL, getenv)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil || u.User.Username() != db.AppRole {
		return "", nil
	}
	password, _ := u.User.Password()
	return password, nil
}

// ensureDatabase creates the database named in adminURL, connecting to the
// server's "postgres" database to do it.
func ensureDatabase(ctx context.Context, adminURL string) error {
	u, err := url.Parse(adminURL)
	if err != nil {
		return fmt.Errorf("database.admin_url: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("database.admin_url: %w (is PostgreSQL running? `make services` starts the development one)", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	return err
}
