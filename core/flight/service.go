package flight

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/util"

	"github.com/fraise-dev/fraise/core"
)

// SQLCatalog is the Flight SQL catalog every dataset belongs to; a
// dataset "sales.orders" is table orders of schema sales, and a
// single-part name has the schema "public". A statement may name a
// dataset with or without either prefix.
const SQLCatalog = "fraise"

// PreparedTTL is how long a prepared statement handle stays valid. Handles
// are signed and stateless, so closing one frees nothing and a restart
// keeps them valid.
const PreparedTTL = time.Hour

// DefaultBatch keeps a record batch well under gRPC's customary 4 MiB
// message limit, so clients with default settings can read it.
var DefaultBatch = BatchLimits{Rows: 65536, Bytes: 3 << 20}

// ServiceOptions configures a Service. Catalog, Tickets and Source are
// required.
type ServiceOptions struct {
	Catalog *Catalog
	Tickets *Tickets
	Source  Source
	// Partitioner, when set, opens the snapshots an export of a dataset
	// declared with endpoints is split over; nil reads every export as one
	// stream.
	Partitioner Partitioner
	// Admitter admits each export before it reads the database (an export
	// holds a pooled connection for its whole length); nil admits all.
	// Its refusals are Export's, unchanged.
	Admitter core.Admitter
	// MaxParts bounds the endpoints one export is split into, so that
	// reading them all at once fits in the tenant's share of the
	// Admitter; zero leaves the dataset's endpoints alone to bound them.
	MaxParts int
	// Batch bounds each record batch (and so the memory one export holds);
	// zero values take DefaultBatch's.
	Batch BatchLimits
	// Logger receives one line per export; nil discards.
	Logger *slog.Logger
}

// Service is Flight's use case, whatever the transport: which datasets a
// principal may read, the plan of an export (its schema and the signed
// tickets that redeem it, split over a snapshot into parallel endpoints
// where the dataset allows), Flight SQL's statements, and the export of a
// ticket, admitted and streamed as record batches. A transport maps its
// requests to these calls and their errors, all *core.Error, to its own
// codes. Safe for concurrent use.
type Service struct {
	o   ServiceOptions
	log *slog.Logger
}

// NewService returns the Service o describes.
func NewService(o ServiceOptions) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Batch.Rows <= 0 {
		o.Batch.Rows = DefaultBatch.Rows
	}
	if o.Batch.Bytes <= 0 {
		o.Batch.Bytes = DefaultBatch.Bytes
	}
	return &Service{o: o, log: o.Logger}
}

// Datasets returns the datasets p may export, by name.
func (s *Service) Datasets(p core.Principal) []*Dataset { return s.o.Catalog.List(p) }

// Plan is how to read one export: its schema, and the tickets that
// redeem it, one per endpoint.
type Plan struct {
	Dataset *Dataset
	Schema  *arrow.Schema
	Tickets [][]byte
	// Ordered says whether reading the endpoints one after another gives
	// the rows in the query's order.
	Ordered bool
}

// PlanOptions tunes Plan.
type PlanOptions struct {
	// Parallel splits an export of a dataset declared with endpoints into
	// parts over one snapshot, one ticket each; without it, one ticket
	// reads it whole.
	Parallel bool
	// Encode, when set, turns each ticket into the bytes the transport
	// hands out (Flight SQL wraps ours in its statement ticket).
	Encode func(ticket []byte) ([]byte, error)
}

// Plan resolves q for p and issues its tickets. Failures are *core.Error:
// CodeNotFound when p may not export the dataset, CodeInvalid or
// CodeForbidden when q does not compile for p (see Compile), CodeInvalid
// when it is too large for a ticket, and the Partitioner's (CodeRateLimited
// when the tenant holds its share of snapshots).
func (s *Service) Plan(ctx context.Context, p core.Principal, q Query, o PlanOptions) (Plan, error) {
	d, st, err := s.prepare(p, q)
	if err != nil {
		return Plan{}, err
	}
	queries := []Query{q}
	var snapshot string
	if o.Parallel {
		if parts, id, err := s.split(ctx, p, d, q); err != nil {
			return Plan{}, err
		} else if parts != nil {
			queries, snapshot = parts, id
		}
	}
	tickets := make([][]byte, len(queries))
	for i, pq := range queries {
		t, _, err := s.o.Tickets.Issue(p, KindTicket, pq, 0)
		if err == nil && o.Encode != nil {
			if t, err = o.Encode(t); err != nil {
				err = core.E("flight.Plan", core.CodeInternal, err)
			}
		}
		if err != nil {
			if snapshot != "" {
				s.o.Partitioner.Release(snapshot)
			}
			return Plan{}, err
		}
		tickets[i] = t
	}
	return Plan{Dataset: d, Schema: schemaOf(st.Columns), Tickets: tickets, Ordered: len(q.Order) > 0}, nil
}

// List returns the plan of reading whole each dataset p may export. A
// listing opens no snapshot: each plan is one ticket. Failures are as
// Plan's.
func (s *Service) List(ctx context.Context, p core.Principal) ([]Plan, error) {
	ds := s.o.Catalog.List(p)
	plans := make([]Plan, 0, len(ds))
	for _, d := range ds {
		pl, err := s.Plan(ctx, p, Query{Dataset: d.Name}, PlanOptions{})
		if err != nil {
			return nil, err
		}
		plans = append(plans, pl)
	}
	return plans, nil
}

// Schema returns the schema of q's export for p, which is the same for
// every caller allowed to run it. Failures are as Plan's resolution.
func (s *Service) Schema(p core.Principal, q Query) (*arrow.Schema, error) {
	_, st, err := s.prepare(p, q)
	if err != nil {
		return nil, err
	}
	return schemaOf(st.Columns), nil
}

// prepare resolves q for p: the dataset must be exportable to p and the
// query must compile against it, with the field protection p's scopes
// call for.
func (s *Service) prepare(p core.Principal, q Query) (*Dataset, Statement, error) {
	d, err := s.o.Catalog.Lookup(p, q.Dataset)
	if err != nil {
		return nil, Statement{}, err
	}
	st, err := Compile(d, q, p)
	if err != nil {
		return nil, Statement{}, err
	}
	return d, st, nil
}

// split returns the parts of q, one per endpoint, over a snapshot it opens
// (and its id), or nil when q is read as one stream: the dataset has one
// endpoint, q cannot be split (SplitKey), there is no Partitioner, or the
// rows are too few. The parts are at most the dataset's endpoints and
// MaxParts.
func (s *Service) split(ctx context.Context, p core.Principal, d *Dataset, q Query) ([]Query, string, error) {
	if s.o.Partitioner == nil {
		return nil, "", nil
	}
	key, ok := SplitKey(d, q, p)
	if !ok {
		return nil, "", nil
	}
	kq := q
	kq.Columns, kq.Order = []string{key.Name}, nil
	_, keys, err := s.prepare(p, kq)
	if err != nil {
		return nil, "", err
	}
	snap, err := s.o.Partitioner.Snapshot(ctx, p.Tenant, keys, s.o.Tickets.TTL())
	if err != nil {
		return nil, "", err
	}
	parts := d.Endpoints
	if s.o.MaxParts > 0 {
		parts = min(parts, s.o.MaxParts)
	}
	qs := Split(q, key, snap, parts)
	if qs == nil {
		s.o.Partitioner.Release(snap.ID)
		return nil, "", nil
	}
	return qs, snap.ID, nil
}

// Writer receives an export from Export.
type Writer interface {
	// Begin is called once, before the first batch, with the export's
	// schema: an export of no rows is its schema alone.
	Begin(schema *arrow.Schema) error
	// Write is called with each record batch, in order, on a goroutine
	// of Export's own, so that the database is read while the previous
	// batch is written. The batch is released when Write returns. Export
	// stops at Write's first error and returns it as it is.
	Write(rec arrow.RecordBatch) error
}

// Export redeems ticket for p: it verifies the ticket, compiles its query
// with the protection p's scopes call for (those of this call, not those
// the ticket was issued under), waits for the Admitter, and streams the
// rows to w. Memory is bounded by the batch limits whatever the size of
// the result: one batch is built while one waits and one is written.
// Cancelling ctx, or w failing, cancels the query. Failures are
// *core.Error: Tickets.Verify's (CodeUnauthenticated, CodeForbidden),
// Plan's resolution, the Admitter's refusal (CodeRateLimited or
// CodeUnavailable, with its retry hint), the Source's, w's as it returned
// them, and CodeUnavailable when ctx ended.
func (s *Service) Export(ctx context.Context, p core.Principal, ticket []byte, w Writer) error {
	q, err := s.o.Tickets.Verify(p, KindTicket, ticket)
	if err != nil {
		return err
	}
	_, st, err := s.prepare(p, q)
	if err != nil {
		return err
	}
	if s.o.Admitter != nil {
		release, err := s.o.Admitter.Admit(ctx, p.Tenant)
		if err != nil {
			return err
		}
		defer release()
	}
	start := time.Now()
	rows, size, err := s.stream(ctx, p.Tenant, st, w)
	s.log.LogAttrs(ctx, slog.LevelInfo, "flight export",
		slog.String("request_id", core.RequestIDFrom(ctx)), slog.String("tenant", p.Tenant),
		slog.String("dataset", q.Dataset), slog.Int64("rows", rows), slog.Int64("bytes", size),
		slog.Duration("duration", time.Since(start)), slog.String("code", string(core.ErrorCode(err))))
	return err
}

// errClosed is what emit answers the source once the writer has failed
// or the call has ended: the source stops at it.
var errClosed = core.Errorf(core.CodeUnavailable, "client stream closed")

// stream runs st and hands its batches to w, returning the rows and Arrow
// bytes written.
func (s *Service) stream(ctx context.Context, tenant string, st Statement, w Writer) (rows, size int64, err error) {
	if err := w.Begin(schemaOf(st.Columns)); err != nil {
		return 0, 0, err
	}
	// The database is read on this goroutine and w written on another,
	// so the source keeps producing while the client drains: one batch
	// building, one queued, one being written bound an export's memory.
	batches := make(chan arrow.RecordBatch, 1)
	stop := make(chan struct{}) // closed when w fails
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rec := range batches {
			if werr == nil {
				n, b := rec.NumRows(), util.TotalRecordSize(rec)
				if werr = w.Write(rec); werr == nil {
					rows, size = rows+n, size+b
				} else {
					close(stop)
				}
			}
			rec.Release()
		}
	}()
	err = s.o.Source.Export(ctx, tenant, st, s.o.Batch, func(rec arrow.RecordBatch) error {
		rec.Retain()
		select {
		case batches <- rec:
			return nil
		case <-stop:
		case <-ctx.Done():
		}
		rec.Release()
		return errClosed
	})
	close(batches)
	<-done
	if werr != nil {
		// The source stopped because w failed: w's error says why.
		err = werr
	}
	return rows, size, err
}

// Statement resolves a Flight SQL statement for p: the query it reads,
// and its schema. The dataset may be named with the catalog's and the
// "public" schema's prefix. A statement with parameters is checked
// (dataset, columns, field protection) as it will run once bound. Failures
// are *core.Error: CodeInvalid for a statement ParseSQL refuses or one
// that names anything but a dataset p may export (told the same way
// whether or not it exists: the statement is the client's argument),
// CodeForbidden for a write statement or a filter on a protected column.
func (s *Service) Statement(p core.Principal, sql string) (Query, *arrow.Schema, error) {
	q, err := ParseSQL(sql)
	if err != nil {
		return q, nil, err
	}
	for _, prefix := range []string{SQLCatalog + ".", "public."} {
		if rest, ok := strings.CutPrefix(q.Dataset, prefix); ok {
			if _, err := s.o.Catalog.Lookup(p, q.Dataset); err != nil {
				q.Dataset = rest
			}
		}
	}
	bound := q
	if q.Params > 0 {
		bound, _ = Bind(q, make([]string, q.Params))
	}
	_, st, err := s.prepare(p, bound)
	if errors.Is(err, ErrNotExportable) {
		err = core.Errorf(core.CodeInvalid, "a statement may read only an exportable dataset, and %q is not one (GetTables lists them)", q.Dataset).WithOp("flight.Statement").Wrap(err)
	}
	if err != nil {
		return q, nil, err
	}
	return q, schemaOf(st.Columns), nil
}

// Prepared is a Flight SQL prepared statement.
type Prepared struct {
	// Handle is the signed, stateless handle, valid for PreparedTTL.
	Handle []byte
	Query  Query
	Schema *arrow.Schema
	// Params is the schema of its parameters: each has the type of the
	// column it compares with (utf8 where unknown), named after it.
	Params *arrow.Schema
}

// Prepare resolves sql for p, as Statement does, and issues its handle.
func (s *Service) Prepare(p core.Principal, sql string) (Prepared, error) {
	q, schema, err := s.Statement(p, sql)
	if err != nil {
		return Prepared{}, err
	}
	h, _, err := s.o.Tickets.Issue(p, KindPrepared, q, PreparedTTL)
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{Handle: h, Query: q, Schema: schema, Params: s.paramSchema(p, q)}, nil
}

func (s *Service) paramSchema(p core.Principal, q Query) *arrow.Schema {
	d, _ := s.o.Catalog.Lookup(p, q.Dataset)
	cols := ParamColumns(q)
	fields := make([]arrow.Field, len(cols))
	for i, name := range cols {
		fields[i] = arrow.Field{Name: name, Type: arrow.BinaryTypes.String, Nullable: true}
		if d == nil {
			continue
		}
		if col, ok := d.Column(name); ok {
			fields[i].Type = col.Type.Scalar().ArrowType()
		}
	}
	return arrow.NewSchema(fields, nil)
}

// Prepared verifies a prepared statement handle presented by p and
// resolves its query and schema. Failures are Tickets.Verify's and
// Plan's resolution.
func (s *Service) Prepared(p core.Principal, handle []byte) (Query, *arrow.Schema, error) {
	q, err := s.o.Tickets.Verify(p, KindPrepared, handle)
	if err != nil {
		return q, nil, err
	}
	schema, err := s.Schema(p, q)
	return q, schema, err
}

// Bind binds one row of parameter values (as ParamText writes them) to the
// prepared statement handle and returns the handle of the bound statement:
// handles are stateless, so the client executes the new one in place of
// the one it prepared, which stays unbound. With vals nil (no row) a
// statement that has no parameters keeps its handle. Failures are
// Tickets.Verify's, Bind's (CodeInvalid for the wrong number of values)
// and Plan's resolution.
func (s *Service) Bind(p core.Principal, handle []byte, vals []string) ([]byte, error) {
	q, err := s.o.Tickets.Verify(p, KindPrepared, handle)
	if err != nil {
		return nil, err
	}
	if vals == nil && q.Params+q.Bound == 0 {
		return handle, nil
	}
	bound, err := Bind(q, vals)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.prepare(p, bound); err != nil {
		return nil, err
	}
	h, _, err := s.o.Tickets.Issue(p, KindPrepared, bound, PreparedTTL)
	return h, err
}
