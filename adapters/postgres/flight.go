package postgres

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

// Exporter streams Flight exports out of PostgreSQL: each export runs in
// one read-only transaction scoped to the tenant (row-level security), its
// rows read in the binary protocol and decoded straight into Arrow
// builders, never through JSON or pgx's per-value scanning. How many
// exports run at once is not its business: core/flight's Service admits
// each through its core.Admitter before calling Export.
type Exporter struct {
	db      *DB
	mem     memory.Allocator
	timeout time.Duration
	// maxSnapshots and perTenant bound the snapshots held open, idle, for
	// exports read in parallel, in all and per tenant.
	maxSnapshots, perTenant int

	mu sync.Mutex
	// Snapshots open for exports read in parallel, by id, and how many
	// each tenant holds.
	snapshots map[string]*snapshot
	held      map[string]int
}

// snapshot is a transaction that exported its snapshot for an export's
// parts to import, held open until they all have.
type snapshot struct {
	tx       pgx.Tx
	tenant   string
	imported map[int]bool
	timer    *time.Timer
}

var (
	_ flight.Source      = (*Exporter)(nil)
	_ flight.Partitioner = (*Exporter)(nil)
)

// ExportOptions tunes an Exporter.
type ExportOptions struct {
	// StatementTimeout bounds one export's statement; exports are long, so
	// it is separate from the requests' timeout. 0 means none.
	StatementTimeout time.Duration
	// Allocator for the Arrow buffers; nil is Go's heap.
	Allocator memory.Allocator
	// MaxSnapshots bounds the snapshots held open for exports read in
	// parallel, each a pooled connection idle until its parts begin (or
	// their tickets expire), so they cannot take every connection GraphQL
	// needs; more are refused with RATE_LIMITED. 0 means 4.
	MaxSnapshots int
	// MaxSnapshotsPerTenant bounds one tenant's snapshots, so that one
	// tenant asking for parallel exports it never reads cannot hold them
	// all. 0 means half of MaxSnapshots, at least 1.
	MaxSnapshotsPerTenant int
}

// NewExporter returns an Exporter reading through db's pool.
func NewExporter(db *DB, o ExportOptions) *Exporter {
	if o.Allocator == nil {
		o.Allocator = memory.NewGoAllocator()
	}
	if o.MaxSnapshots <= 0 {
		o.MaxSnapshots = 4
	}
	if o.MaxSnapshotsPerTenant <= 0 {
		o.MaxSnapshotsPerTenant = max(1, o.MaxSnapshots/2)
	}
	return &Exporter{db: db, mem: o.Allocator, timeout: o.StatementTimeout, maxSnapshots: o.MaxSnapshots,
		perTenant: o.MaxSnapshotsPerTenant, snapshots: map[string]*snapshot{}, held: map[string]int{}}
}

// Export implements flight.Source.
func (e *Exporter) Export(ctx context.Context, tenant string, st flight.Statement, lim flight.BatchLimits, emit func(arrow.RecordBatch) error) error {
	const op = "postgres.Export"
	if !isUUID(tenant) {
		return core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
	}
	schema, err := flight.StatementSchema(st)
	if err != nil {
		return err
	}
	txo := pgx.TxOptions{AccessMode: pgx.ReadOnly}
	if st.Snapshot != "" {
		if !flight.ValidSnapshot(st.Snapshot) {
			return core.Errorf(core.CodeInvalid, "malformed export part").WithOp(op)
		}
		// Only a repeatable-read transaction can import a snapshot.
		txo.IsoLevel = pgx.RepeatableRead
	}
	tx, err := e.db.begin(ctx, txo)
	if err != nil {
		return mapError(op, err)
	}
	// Nothing to commit: the transaction only reads.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if st.Snapshot != "" {
		// A part of an export read in parallel reads the snapshot the
		// export took (Snapshot): SET TRANSACTION SNAPSHOT must come
		// first, and takes no parameter (the id is checked above, and
		// came in a signed ticket).
		if _, err := tx.Exec(ctx, "set transaction snapshot '"+st.Snapshot+"'"); err != nil {
			var pg *pgconn.PgError
			if errors.As(err, &pg) && pg.Code == "22023" { // invalid_parameter_value: no such snapshot
				return core.Errorf(core.CodeNotFound, "this export's snapshot has ended (its parts have all begun, or its tickets expired): ask for the flight again").WithOp(op).Wrap(err)
			}
			return mapError(op, err)
		}
		e.imported(st.Snapshot, st.Part, st.Parts)
	}
	// Transaction-local settings: the tenant for row-level security, UTC so
	// filter values without an offset mean UTC, and the export's timeout.
	if _, err := tx.Exec(ctx, "select set_config('fraise.tenant', $1, true), set_config('TimeZone', 'UTC', true), set_config('statement_timeout', $2, true)",
		tenant, strconv.FormatInt(e.timeout.Milliseconds(), 10)); err != nil {
		return mapError(op, err)
	}
	args := append([]any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}, st.Args...)
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := tx.Query(qctx, st.SQL, args...)
	if err != nil {
		return mapError(op, err)
	}
	// Closing rows left unread would read the rest of the result, however
	// long, only to discard it. Cancelling first makes pgx abandon the
	// query instead: it sends PostgreSQL a cancel request and closes the
	// connection, so the rollback fails and the pool drops the connection
	// rather than reusing it. After the last row, cancelling does nothing.
	defer func() {
		cancel()
		rows.Close()
	}()
	fds := rows.FieldDescriptions()
	if len(fds) != len(st.Columns) {
		return core.Errorf(core.CodeInternal, "dataset does not match its view").WithOp(op).Wrap(errorf("view returned %d columns, want %d", len(fds), len(st.Columns)))
	}
	for i, fd := range fds {
		if typ := st.Columns[i].Type; !acceptsOID(typ, fd.DataTypeOID) {
			return core.Errorf(core.CodeInternal, "dataset does not match its view").WithOp(op).Wrap(errorf("column %s has type oid %d, declared %s (oid %d)", st.Columns[i].Name, fd.DataTypeOID, typ, typeOID(typ)))
		}
	}
	rb := array.NewRecordBuilder(e.mem, schema)
	defer rb.Release()
	apps := make([]appender, len(st.Columns))
	for i, c := range st.Columns {
		apps[i] = newAppender(c.Type, rb.Field(i))
	}
	// Reserve room for as many rows as the last batch held, so builders do
	// not grow by doubling and copying through every batch.
	rb.Reserve(min(lim.Rows, 1024))
	// A batch's size is counted in Arrow bytes, which lim.Bytes bounds (it
	// keeps batches under gRPC's message limit), not in PostgreSQL's: a
	// fixed-width column costs its width in every row, NULL (no bytes on
	// the wire) included, and a variable-width one a 4-byte offset besides
	// its value (whose wire form is about its Arrow size, or more); each
	// also a byte for its validity bit and the buffers' padding, which
	// overcounts a little, on the safe side.
	fixed := make([]int, len(st.Columns))
	for i, f := range schema.Fields() {
		if fw, ok := f.Type.(arrow.FixedWidthDataType); ok {
			fixed[i] = max(1, fw.BitWidth()/8)
		}
	}
	n, size := 0, 0
	flush := func() error {
		rec := rb.NewRecordBatch()
		defer rec.Release()
		rb.Reserve(n)
		n, size = 0, 0
		return emit(rec)
	}
	for rows.Next() {
		vals := rows.RawValues()
		for i, v := range vals {
			if err := apps[i](v); err != nil {
				return core.Errorf(core.CodeInvalid, "column %s: %v", st.Columns[i].Name, err).WithOp(op).Wrap(err)
			}
			if fixed[i] > 0 {
				size += fixed[i] + 1
			} else {
				size += 4 + len(v) + 1
			}
		}
		n++
		if n >= lim.Rows || size >= lim.Bytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return mapError(op, err)
	}
	if n > 0 {
		return flush()
	}
	return nil
}

// Snapshot implements flight.Partitioner: a read-only repeatable-read
// transaction, scoped to tenant like an export's, exports its snapshot
// (pg_export_snapshot) and reads the range of keys in it, then stays open,
// idle, until the parts have imported the snapshot, Release, or ttl. A
// tenant holds at most MaxSnapshotsPerTenant such transactions, and all
// tenants together MaxSnapshots, each a pooled connection.
func (e *Exporter) Snapshot(ctx context.Context, tenant string, keys flight.Statement, ttl time.Duration) (flight.Snapshot, error) {
	const op = "postgres.Snapshot"
	if !isUUID(tenant) {
		return flight.Snapshot{}, core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp(op)
	}
	if len(keys.Columns) != 1 {
		return flight.Snapshot{}, core.E(op, core.CodeInternal, errorf("keys statement has %d columns", len(keys.Columns)))
	}
	e.mu.Lock()
	if e.held[tenant] >= e.perTenant || len(e.snapshots) >= e.maxSnapshots {
		e.mu.Unlock()
		return flight.Snapshot{}, core.Errorf(core.CodeRateLimited, "this tenant already holds %d snapshots for parallel exports (flight.max_exports_per_tenant): read their parts, or retry when their tickets expire", e.perTenant).WithOp(op)
	}
	e.held[tenant]++
	e.mu.Unlock()
	kept := false
	defer func() {
		if !kept {
			e.mu.Lock()
			e.unhold(tenant)
			e.mu.Unlock()
		}
	}()
	tx, err := e.db.begin(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return flight.Snapshot{}, mapError(op, err)
	}
	fail := func(err error) (flight.Snapshot, error) {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return flight.Snapshot{}, mapError(op, err)
	}
	if _, err := tx.Exec(ctx, "select set_config('fraise.tenant', $1, true), set_config('TimeZone', 'UTC', true), set_config('statement_timeout', $2, true)",
		tenant, strconv.FormatInt(e.timeout.Milliseconds(), 10)); err != nil {
		return fail(err)
	}
	var s flight.Snapshot
	if err := tx.QueryRow(ctx, "select pg_export_snapshot()").Scan(&s.ID); err != nil {
		return fail(err)
	}
	var lo, hi *string
	if err := tx.QueryRow(ctx, "select min(k)::text, max(k)::text from ("+keys.SQL+") s(k)", keys.Args...).Scan(&lo, &hi); err != nil {
		return fail(err)
	}
	if lo != nil && hi != nil {
		s.Min, s.Max = *lo, *hi
	}
	if !flight.ValidSnapshot(s.ID) {
		return fail(errorf("pg_export_snapshot returned %q", s.ID))
	}
	h := &snapshot{tx: tx, tenant: tenant, imported: map[int]bool{}}
	e.mu.Lock()
	e.snapshots[s.ID] = h
	h.timer = time.AfterFunc(ttl, func() { e.Release(s.ID) })
	e.mu.Unlock()
	kept = true
	return s, nil
}

// Close ends every snapshot still held for parallel exports, whose
// connections the pool would otherwise wait for as it closes (until the
// tickets expire). Call it before closing the DB; parts not yet begun
// then find their snapshot ended.
func (e *Exporter) Close() {
	e.mu.Lock()
	ids := make([]string, 0, len(e.snapshots))
	for id := range e.snapshots {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	for _, id := range ids {
		e.Release(id)
	}
}

// Release implements flight.Partitioner.
func (e *Exporter) Release(id string) {
	e.mu.Lock()
	h, ok := e.snapshots[id]
	if ok {
		delete(e.snapshots, id)
		e.unhold(h.tenant)
		h.timer.Stop()
	}
	e.mu.Unlock()
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.tx.Rollback(ctx)
	}
}

// imported notes that part of parts has imported snapshot id, and ends
// the snapshot once every part has.
func (e *Exporter) imported(id string, part, parts int) {
	e.mu.Lock()
	h, ok := e.snapshots[id]
	done := false
	if ok {
		h.imported[part] = true
		done = len(h.imported) >= parts
	}
	e.mu.Unlock()
	if done {
		e.Release(id)
	}
}

// unhold counts one snapshot of tenant fewer; e.mu is held.
func (e *Exporter) unhold(tenant string) {
	if e.held[tenant]--; e.held[tenant] <= 0 {
		delete(e.held, tenant)
	}
}
