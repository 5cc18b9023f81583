package postgres

// NewConns is how many connections db's pool has opened, for tests that
// show a connection reused rather than opened anew.
func NewConns(db *DB) int64 { return db.pool.Stat().NewConnsCount() }
