package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// NewConns is how many connections db's pool has opened, for tests that
// show a connection reused rather than opened anew.
func NewConns(db *DB) int64 { return db.pool.Stat().NewConnsCount() }

// ResetPool closes db's pool's connections, so that the next use opens a
// new one: how tests show what a new connection is made with.
func ResetPool(db *DB) { db.pool.Reset() }

// Acquires is how many times db's pool has handed out a connection, for
// tests that count the tries of a loop that acquires one per try.
func Acquires(db *DB) int64 { return db.pool.Stat().AcquireCount() }

// Exec, QueryInt and QueryRowInt run a statement the way the adapter's
// reads and writes outside a transaction do (the outbox, the rules, the
// catalog, API keys), for tests of what those paths survive.
func Exec(ctx context.Context, db *DB, sql string) error {
	_, err := db.exec(ctx, sql)
	return err
}

func QueryInt(ctx context.Context, db *DB, sql string) (int, error) {
	rows, err := db.query(ctx, sql)
	if err != nil {
		return 0, err
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int])
	return n, err
}

func QueryRowInt(ctx context.Context, db *DB, sql string) (n int, err error) {
	err = db.queryRow(ctx, sql).Scan(&n)
	return n, err
}

func SendBatch(ctx context.Context, db *DB, sql string) error {
	b := &pgx.Batch{}
	b.Queue(sql)
	br, err := db.sendBatch(ctx, b)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
