package flightsvc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql/schema_ref"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

// Catalog is the Flight SQL catalog every dataset belongs to; a dataset
// "sales.orders" is table orders of schema sales, and a single-part name
// has the schema "public".
const Catalog = "fraise"

// PreparedTTL is how long a prepared statement handle stays valid. Handles
// are signed and stateless, so closing one frees nothing and a server
// restart keeps them valid.
const PreparedTTL = time.Hour

// sqlServer is Flight SQL over the same catalog and tickets.
type sqlServer struct {
	flightsql.BaseServer
	s *Server
}

func newSQLServer(s *Server) *sqlServer {
	q := &sqlServer{s: s}
	version := s.o.Version
	if version == "" {
		version = "dev"
	}
	for id, v := range sqlInfo(version) {
		_ = q.RegisterSqlInfo(id, v) // every value has a type Flight SQL has: TestSqlInfoAnswersEveryID
	}
	return q
}

func (q *sqlServer) fail(ctx context.Context, op string, err error) error {
	return q.s.toStatus(ctx, op, err)
}

// lookupSQL parses a statement and resolves its dataset, accepting the
// catalog's name as an optional first part.
func (q *sqlServer) lookupSQL(ctx context.Context, sql string) (core.Principal, flight.Query, flight.Statement, error) {
	p, err := principal(ctx)
	if err != nil {
		return p, flight.Query{}, flight.Statement{}, err
	}
	fq, err := flight.ParseSQL(sql)
	if err != nil {
		return p, fq, flight.Statement{}, err
	}
	if rest, ok := strings.CutPrefix(fq.Dataset, Catalog+"."); ok {
		if _, err := q.s.o.Catalog.Lookup(p, fq.Dataset); err != nil {
			fq.Dataset = rest
		}
	}
	if rest, ok := strings.CutPrefix(fq.Dataset, "public."); ok {
		if _, err := q.s.o.Catalog.Lookup(p, fq.Dataset); err != nil {
			fq.Dataset = rest
		}
	}
	// A statement with parameters is checked (dataset, columns, field
	// protection) as it will run once bound; it runs only once it is.
	bound := fq
	if fq.Params > 0 {
		bound, _ = flight.Bind(fq, make([]string, fq.Params))
	}
	_, st, err := q.s.prepare(p, bound)
	if errors.Is(err, flight.ErrNotExportable) {
		// A statement is the client's argument: naming a relation outside
		// the exportable datasets is a bad statement, told the same way
		// whether or not the relation exists, so the answer reveals nothing.
		err = &core.Error{Code: core.CodeInvalid, Op: "flight.sql",
			Message: fmt.Sprintf("a statement may read only an exportable dataset, and %q is not one (GetTables lists them)", fq.Dataset),
			Err:     err}
	}
	return p, fq, st, err
}

func (q *sqlServer) GetFlightInfoStatement(ctx context.Context, cmd flightsql.StatementQuery, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	_, fq, _, err := q.lookupSQL(ctx, cmd.GetQuery())
	if err != nil {
		return nil, q.fail(ctx, "GetFlightInfoStatement", err)
	}
	info, err := q.s.issue(ctx, desc, fq, flightsql.CreateStatementQueryTicket, true)
	return info, q.fail(ctx, "GetFlightInfoStatement", err)
}

func (q *sqlServer) GetSchemaStatement(ctx context.Context, cmd flightsql.StatementQuery, _ *aflight.FlightDescriptor) (*aflight.SchemaResult, error) {
	_, _, st, err := q.lookupSQL(ctx, cmd.GetQuery())
	if err != nil {
		return nil, q.fail(ctx, "GetSchemaStatement", err)
	}
	schema, _ := flight.StatementSchema(st)
	return &aflight.SchemaResult{Schema: aflight.SerializeSchema(schema, q.s.mem)}, nil
}

func (q *sqlServer) DoGetStatement(ctx context.Context, _ flightsql.StatementQueryTicket) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	// Our statement tickets are intercepted by service.DoGet; any other
	// handle was not issued here.
	return nil, nil, q.fail(ctx, "DoGetStatement", core.Errorf(core.CodeUnauthenticated, "invalid ticket"))
}

func (q *sqlServer) CreatePreparedStatement(ctx context.Context, req flightsql.ActionCreatePreparedStatementRequest) (flightsql.ActionCreatePreparedStatementResult, error) {
	var res flightsql.ActionCreatePreparedStatementResult
	p, fq, st, err := q.lookupSQL(ctx, req.GetQuery())
	if err != nil {
		return res, q.fail(ctx, "CreatePreparedStatement", err)
	}
	h, _, err := q.s.o.Tickets.Issue(p, flight.KindPrepared, fq, PreparedTTL)
	if err != nil {
		return res, q.fail(ctx, "CreatePreparedStatement", err)
	}
	schema, _ := flight.StatementSchema(st)
	isUpdate := false
	return flightsql.ActionCreatePreparedStatementResult{Handle: h, DatasetSchema: schema,
		ParameterSchema: q.paramSchema(p, fq), IsUpdate: &isUpdate}, nil
}

// paramSchema is the schema of fq's parameters: each has the type of the
// column it compares with (utf8 where unknown), named after it.
func (q *sqlServer) paramSchema(p core.Principal, fq flight.Query) *arrow.Schema {
	d, _ := q.s.o.Catalog.Lookup(p, fq.Dataset)
	cols := flight.ParamColumns(fq)
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

func (q *sqlServer) ClosePreparedStatement(context.Context, flightsql.ActionClosePreparedStatementRequest) error {
	return nil
}

// prepared verifies a prepared statement handle and resolves its query.
func (q *sqlServer) prepared(ctx context.Context, handle []byte) (flight.Query, flight.Statement, error) {
	p, err := principal(ctx)
	if err != nil {
		return flight.Query{}, flight.Statement{}, err
	}
	fq, err := q.s.o.Tickets.Verify(p, flight.KindPrepared, handle)
	if err != nil {
		return fq, flight.Statement{}, err
	}
	_, st, err := q.s.prepare(p, fq)
	return fq, st, err
}

func (q *sqlServer) GetFlightInfoPreparedStatement(ctx context.Context, cmd flightsql.PreparedStatementQuery, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	fq, _, err := q.prepared(ctx, cmd.GetPreparedStatementHandle())
	if err != nil {
		return nil, q.fail(ctx, "GetFlightInfoPreparedStatement", err)
	}
	info, err := q.s.issue(ctx, desc, fq, flightsql.CreateStatementQueryTicket, true)
	return info, q.fail(ctx, "GetFlightInfoPreparedStatement", err)
}

func (q *sqlServer) GetSchemaPreparedStatement(ctx context.Context, cmd flightsql.PreparedStatementQuery, _ *aflight.FlightDescriptor) (*aflight.SchemaResult, error) {
	_, st, err := q.prepared(ctx, cmd.GetPreparedStatementHandle())
	if err != nil {
		return nil, q.fail(ctx, "GetSchemaPreparedStatement", err)
	}
	schema, _ := flight.StatementSchema(st)
	return &aflight.SchemaResult{Schema: aflight.SerializeSchema(schema, q.s.mem)}, nil
}

var errReadOnly = core.Errorf(core.CodeForbidden, "write statements are refused: Flight SQL exports are read-only")

func (q *sqlServer) DoPutCommandStatementUpdate(ctx context.Context, _ flightsql.StatementUpdate) (int64, error) {
	return 0, q.fail(ctx, "DoPutCommandStatementUpdate", errReadOnly)
}

func (q *sqlServer) DoPutPreparedStatementUpdate(ctx context.Context, _ flightsql.PreparedStatementUpdate, _ aflight.MessageReader) (int64, error) {
	return 0, q.fail(ctx, "DoPutPreparedStatementUpdate", errReadOnly)
}

func (q *sqlServer) DoPutCommandStatementIngest(ctx context.Context, _ flightsql.StatementIngest, _ aflight.MessageReader) (int64, error) {
	return 0, q.fail(ctx, "DoPutCommandStatementIngest", errReadOnly)
}

// DoPutPreparedStatementQuery binds a prepared statement's parameters:
// one row of values, in the order of the statement's ?. Handles are
// stateless, so the answer is a new handle carrying the bound query
// (Flight SQL's DoPutPreparedStatementResult), which the client executes
// in place of the one it prepared; that one stays unbound, to be bound
// again. Values become text PostgreSQL casts to each column's type, never
// SQL.
func (q *sqlServer) DoPutPreparedStatementQuery(ctx context.Context, cmd flightsql.PreparedStatementQuery, rdr aflight.MessageReader, _ aflight.MetadataWriter) ([]byte, error) {
	const op = "DoPutPreparedStatementQuery"
	p, err := principal(ctx)
	if err != nil {
		return nil, q.fail(ctx, op, err)
	}
	fq, err := q.s.o.Tickets.Verify(p, flight.KindPrepared, cmd.GetPreparedStatementHandle())
	if err != nil {
		return nil, q.fail(ctx, op, err)
	}
	var vals []string
	rows := 0
	for rdr.Next() {
		rec := rdr.RecordBatch()
		if rec.NumRows() == 0 {
			continue
		}
		if rows += int(rec.NumRows()); rows > 1 {
			return nil, q.fail(ctx, op, core.Errorf(core.CodeInvalid, "bind one row of parameters at a time, got %d", rows))
		}
		for i, col := range rec.Columns() {
			v, err := flight.ParamText(col, 0, i+1)
			if err != nil {
				return nil, q.fail(ctx, op, err)
			}
			vals = append(vals, v)
		}
	}
	if err := rdr.Err(); err != nil {
		return nil, q.fail(ctx, op, core.E(op, core.CodeInvalid, err))
	}
	if rows == 0 && fq.Params+fq.Bound == 0 {
		return cmd.GetPreparedStatementHandle(), nil
	}
	bound, err := flight.Bind(fq, vals)
	if err != nil {
		return nil, q.fail(ctx, op, err)
	}
	if _, _, err := q.s.prepare(p, bound); err != nil {
		return nil, q.fail(ctx, op, err)
	}
	h, _, err := q.s.o.Tickets.Issue(p, flight.KindPrepared, bound, PreparedTTL)
	if err != nil {
		return nil, q.fail(ctx, op, err)
	}
	return h, nil
}

// cmdInfo answers a metadata command's GetFlightInfo: its ticket is the
// command itself, handled by the flightsql server's DoGet.
func (q *sqlServer) cmdInfo(desc *aflight.FlightDescriptor, schema *arrow.Schema) *aflight.FlightInfo {
	return &aflight.FlightInfo{
		Schema:           aflight.SerializeSchema(schema, q.s.mem),
		FlightDescriptor: desc,
		Endpoint:         []*aflight.FlightEndpoint{{Ticket: &aflight.Ticket{Ticket: desc.Cmd}}},
		TotalRecords:     -1,
		TotalBytes:       -1,
	}
}

// one returns a channel holding one record, built synchronously: metadata
// answers are small, and no goroutine means none to leak.
func one(rec arrow.RecordBatch) <-chan aflight.StreamChunk {
	ch := make(chan aflight.StreamChunk, 1)
	ch <- aflight.StreamChunk{Data: rec}
	close(ch)
	return ch
}

func (q *sqlServer) GetFlightInfoCatalogs(_ context.Context, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, schema_ref.Catalogs), nil
}

func (q *sqlServer) DoGetCatalogs(context.Context) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	b := array.NewRecordBuilder(q.s.mem, schema_ref.Catalogs)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).Append(Catalog)
	return schema_ref.Catalogs, one(b.NewRecordBatch()), nil
}

func (q *sqlServer) GetFlightInfoTableTypes(_ context.Context, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, schema_ref.TableTypes), nil
}

func (q *sqlServer) DoGetTableTypes(context.Context) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	b := array.NewRecordBuilder(q.s.mem, schema_ref.TableTypes)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).Append("VIEW")
	return schema_ref.TableTypes, one(b.NewRecordBatch()), nil
}

// splitName returns a dataset's Flight SQL schema and table.
func splitName(name string) (string, string) {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "public", name
}

func (q *sqlServer) GetFlightInfoSchemas(_ context.Context, _ flightsql.GetDBSchemas, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, schema_ref.DBSchemas), nil
}

func (q *sqlServer) DoGetDBSchemas(ctx context.Context, cmd flightsql.GetDBSchemas) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, nil, q.fail(ctx, "DoGetDBSchemas", err)
	}
	b := array.NewRecordBuilder(q.s.mem, schema_ref.DBSchemas)
	defer b.Release()
	seen := map[string]bool{}
	if cmd.GetCatalog() == nil || *cmd.GetCatalog() == Catalog {
		for _, d := range q.s.o.Catalog.List(p) {
			schema, _ := splitName(d.Name)
			if seen[schema] || !like(cmd.GetDBSchemaFilterPattern(), schema) {
				continue
			}
			seen[schema] = true
			b.Field(0).(*array.StringBuilder).Append(Catalog)
			b.Field(1).(*array.StringBuilder).Append(schema)
		}
	}
	return schema_ref.DBSchemas, one(b.NewRecordBatch()), nil
}

func (q *sqlServer) GetFlightInfoTables(_ context.Context, cmd flightsql.GetTables, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	if cmd.GetIncludeSchema() {
		return q.cmdInfo(desc, schema_ref.TablesWithIncludedSchema), nil
	}
	return q.cmdInfo(desc, schema_ref.Tables), nil
}

func (q *sqlServer) DoGetTables(ctx context.Context, cmd flightsql.GetTables) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, nil, q.fail(ctx, "DoGetTables", err)
	}
	sc := schema_ref.Tables
	if cmd.GetIncludeSchema() {
		sc = schema_ref.TablesWithIncludedSchema
	}
	b := array.NewRecordBuilder(q.s.mem, sc)
	defer b.Release()
	typeOK := len(cmd.GetTableTypes()) == 0
	for _, t := range cmd.GetTableTypes() {
		typeOK = typeOK || strings.EqualFold(t, "VIEW")
	}
	if typeOK && (cmd.GetCatalog() == nil || *cmd.GetCatalog() == Catalog) {
		for _, d := range q.s.o.Catalog.List(p) {
			schema, table := splitName(d.Name)
			if !like(cmd.GetDBSchemaFilterPattern(), schema) || !like(cmd.GetTableNameFilterPattern(), table) {
				continue
			}
			b.Field(0).(*array.StringBuilder).Append(Catalog)
			b.Field(1).(*array.StringBuilder).Append(schema)
			b.Field(2).(*array.StringBuilder).Append(table)
			b.Field(3).(*array.StringBuilder).Append("VIEW")
			if cmd.GetIncludeSchema() {
				s, _ := d.Schema(nil)
				b.Field(4).(*array.BinaryBuilder).Append(aflight.SerializeSchema(s, q.s.mem))
			}
		}
	}
	return sc, one(b.NewRecordBatch()), nil
}

// like matches s against a SQL LIKE pattern (% and _, \ escapes); a nil
// pattern matches everything. It runs in O(len(pattern) * len(s)), whatever
// the pattern.
func like(pattern *string, s string) bool {
	if pattern == nil {
		return true
	}
	type tok struct {
		r   rune
		any bool // %
		one bool // _
	}
	var p []tok
	pr := []rune(*pattern)
	for i := 0; i < len(pr); i++ {
		switch {
		case pr[i] == '\\' && i+1 < len(pr):
			i++
			p = append(p, tok{r: pr[i]})
		case pr[i] == '%':
			p = append(p, tok{any: true})
		case pr[i] == '_':
			p = append(p, tok{one: true})
		default:
			p = append(p, tok{r: pr[i]})
		}
	}
	str := []rune(s)
	// match[j]: the pattern so far matches str[:j].
	match := make([]bool, len(str)+1)
	match[0] = true
	for _, t := range p {
		next := make([]bool, len(str)+1)
		for j := 0; j <= len(str); j++ {
			switch {
			case t.any:
				next[j] = match[j] || (j > 0 && next[j-1])
			case j == 0:
			case t.one || str[j-1] == t.r:
				next[j] = match[j-1]
			}
		}
		match = next
	}
	return match[len(str)]
}
