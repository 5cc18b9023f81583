package flightsvc

import (
	"context"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql/schema_ref"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

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

// statement resolves a Flight SQL statement for the call's principal.
func (q *sqlServer) statement(ctx context.Context, sql string) (flight.Query, *arrow.Schema, error) {
	p, err := principal(ctx)
	if err != nil {
		return flight.Query{}, nil, err
	}
	return q.s.app.Statement(p, sql)
}

func (q *sqlServer) GetFlightInfoStatement(ctx context.Context, cmd flightsql.StatementQuery, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	fq, _, err := q.statement(ctx, cmd.GetQuery())
	if err != nil {
		return nil, q.fail(ctx, "GetFlightInfoStatement", err)
	}
	info, err := q.s.plan(ctx, desc, fq, flightsql.CreateStatementQueryTicket)
	return info, q.fail(ctx, "GetFlightInfoStatement", err)
}

func (q *sqlServer) GetSchemaStatement(ctx context.Context, cmd flightsql.StatementQuery, _ *aflight.FlightDescriptor) (*aflight.SchemaResult, error) {
	_, schema, err := q.statement(ctx, cmd.GetQuery())
	if err != nil {
		return nil, q.fail(ctx, "GetSchemaStatement", err)
	}
	return &aflight.SchemaResult{Schema: aflight.SerializeSchema(schema, q.s.mem)}, nil
}

func (q *sqlServer) DoGetStatement(ctx context.Context, _ flightsql.StatementQueryTicket) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	// Our statement tickets are intercepted by service.DoGet; any other
	// handle was not issued here.
	return nil, nil, q.fail(ctx, "DoGetStatement", core.Errorf(core.CodeUnauthenticated, "invalid ticket"))
}

func (q *sqlServer) CreatePreparedStatement(ctx context.Context, req flightsql.ActionCreatePreparedStatementRequest) (flightsql.ActionCreatePreparedStatementResult, error) {
	var res flightsql.ActionCreatePreparedStatementResult
	p, err := principal(ctx)
	if err != nil {
		return res, q.fail(ctx, "CreatePreparedStatement", err)
	}
	ps, err := q.s.app.Prepare(p, req.GetQuery())
	if err != nil {
		return res, q.fail(ctx, "CreatePreparedStatement", err)
	}
	isUpdate := false
	return flightsql.ActionCreatePreparedStatementResult{Handle: ps.Handle, DatasetSchema: ps.Schema,
		ParameterSchema: ps.Params, IsUpdate: &isUpdate}, nil
}

func (q *sqlServer) ClosePreparedStatement(context.Context, flightsql.ActionClosePreparedStatementRequest) error {
	return nil
}

// prepared verifies a prepared statement handle and resolves its query.
func (q *sqlServer) prepared(ctx context.Context, handle []byte) (flight.Query, *arrow.Schema, error) {
	p, err := principal(ctx)
	if err != nil {
		return flight.Query{}, nil, err
	}
	return q.s.app.Prepared(p, handle)
}

func (q *sqlServer) GetFlightInfoPreparedStatement(ctx context.Context, cmd flightsql.PreparedStatementQuery, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	fq, _, err := q.prepared(ctx, cmd.GetPreparedStatementHandle())
	if err != nil {
		return nil, q.fail(ctx, "GetFlightInfoPreparedStatement", err)
	}
	info, err := q.s.plan(ctx, desc, fq, flightsql.CreateStatementQueryTicket)
	return info, q.fail(ctx, "GetFlightInfoPreparedStatement", err)
}

func (q *sqlServer) GetSchemaPreparedStatement(ctx context.Context, cmd flightsql.PreparedStatementQuery, _ *aflight.FlightDescriptor) (*aflight.SchemaResult, error) {
	_, schema, err := q.prepared(ctx, cmd.GetPreparedStatementHandle())
	if err != nil {
		return nil, q.fail(ctx, "GetSchemaPreparedStatement", err)
	}
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
	if rows > 0 && vals == nil {
		vals = []string{} // a row of no values: bound, not absent
	}
	h, err := q.s.app.Bind(p, cmd.GetPreparedStatementHandle(), vals)
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
		for _, d := range q.s.app.Datasets(p) {
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
		for _, d := range q.s.app.Datasets(p) {
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
