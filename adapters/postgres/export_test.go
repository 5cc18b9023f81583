package postgres

// NewConns is how many connections db's pool has opened, for tests that
// show a connection reused rather than opened anew.
func NewConns(db *DB) int64 { return db.pool.Stat().NewConnsCount() }

// ResetPool closes db's pool's connections, so that the next use opens a
// new one: how tests show what a new connection is made with.
func ResetPool(db *DB) { db.pool.Reset() }

// Acquires is how many times db's pool has handed out a connection, for
// tests that count the tries of a loop that acquires one per try.
func Acquires(db *DB) int64 { return db.pool.Stat().AcquireCount() }
