package postgres

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/test/harness"
)

var roleSeq atomic.Int64

// storedPassword returns role's stored password (its verifier).
func storedPassword(t *testing.T, conn *pgx.Conn, role string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(context.Background(), "select rolpassword from pg_authid where rolname = $1", role).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// checkVerifier recomputes a stored SCRAM-SHA-256 verifier of password
// with its own salt.
func checkVerifier(t *testing.T, stored, password string) {
	t.Helper()
	rest, ok := strings.CutPrefix(stored, fmt.Sprintf("SCRAM-SHA-256$%d:", scramIterations))
	if !ok {
		t.Fatalf("stored password %q is no SCRAM-SHA-256 verifier of %d iterations", stored, scramIterations)
	}
	salt64, _, _ := strings.Cut(rest, "$")
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		t.Fatal(err)
	}
	got, err := scramVerifierSalted(password, salt)
	if err != nil || got != stored {
		t.Fatalf("verifier of %q with the stored salt: got %q (%v), PostgreSQL stored %q", password, got, err, stored)
	}
}

// TestSCRAMVerifier checks the verifier Migrate sends against
// PostgreSQL's own: for a password PostgreSQL hashed itself, the same
// salt gives the same verifier; and the role Migrate creates with a
// password stores exactly the verifier sent, never the password.
func TestSCRAMVerifier(t *testing.T) {
	pg, db := harness.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.AdminURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	role := fmt.Sprintf("scram_probe_%d_%d", roleSeq.Add(1), len(db))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })

	// PostgreSQL's own hash of a plaintext password.
	if _, err := conn.Exec(ctx, "SET password_encryption = 'scram-sha-256'; CREATE ROLE "+role+" PASSWORD 'correct horse battery staple'"); err != nil {
		t.Fatal(err)
	}
	checkVerifier(t, storedPassword(t, conn, role), "correct horse battery staple")

	// Migrate's, for a password with a quote in it.
	app := role + "_app"
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP OWNED BY "+app+"; DROP ROLE IF EXISTS "+app) })
	const password = `it's a S3cret!`
	if err := Migrate(ctx, pg.AdminURL(db), MigrateOptions{AppRole: app, AppPassword: password}); err != nil {
		t.Fatal(err)
	}
	checkVerifier(t, storedPassword(t, conn, app), password)
}
