// Package flightsvc serves Fraise's Arrow Flight exports over gRPC: the
// Flight service (ListFlights, GetSchema, GetFlightInfo answered with signed
// tickets, DoGet streaming record batches) and, on the same FlightService,
// Flight SQL for standard clients such as the ADBC driver. Every call must
// carry extauthz's identity assertion in its metadata, exactly like the
// HTTP port; core errors become gRPC codes through one table.
package flightsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	pb "github.com/apache/arrow-go/v18/arrow/flight/gen/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/arrow/util"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// Options configures the Flight service.
type Options struct {
	Verifier *assertion.Verifier
	Catalog  *flight.Catalog
	Tickets  *flight.Tickets
	Source   flight.Source
	// Batch bounds each record batch DoGet sends (and so the memory one
	// export holds); zero values take DefaultBatch's.
	Batch  flight.BatchLimits
	Logger *slog.Logger
	// Version is reported through Flight SQL's SqlInfo.
	Version string
	// Metrics, when set, receives the service's metrics.
	Metrics prometheus.Registerer
}

// DefaultBatch keeps a record batch well under gRPC's customary 4 MiB
// message limit, so clients with default settings can read it.
var DefaultBatch = flight.BatchLimits{Rows: 65536, Bytes: 3 << 20}

// codeOf is the one table from core error codes to gRPC codes.
var codeOf = map[core.Code]codes.Code{
	core.CodeInvalid:         codes.InvalidArgument,
	core.CodeNotFound:        codes.NotFound,
	core.CodeConflict:        codes.AlreadyExists,
	core.CodeUnauthenticated: codes.Unauthenticated,
	core.CodeForbidden:       codes.PermissionDenied,
	core.CodeRateLimited:     codes.ResourceExhausted,
	core.CodeQuotaExceeded:   codes.ResourceExhausted,
	core.CodeTooLarge:        codes.ResourceExhausted,
	core.CodeUnavailable:     codes.Unavailable,
	core.CodeTimeout:         codes.DeadlineExceeded,
	core.CodeInternal:        codes.Internal,
}

// CodeOf returns the gRPC code for an error's core code.
func CodeOf(err error) codes.Code {
	if c, ok := codeOf[core.ErrorCode(err)]; ok {
		return c
	}
	return codes.Internal
}

// Server is the Flight gRPC service.
type Server struct {
	o   Options
	log *slog.Logger
	mem memory.Allocator
	sql aflight.FlightServer
	svc *service
	met *metrics
}

// New returns the Flight service.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Batch.Rows <= 0 {
		o.Batch.Rows = DefaultBatch.Rows
	}
	if o.Batch.Bytes <= 0 {
		o.Batch.Bytes = DefaultBatch.Bytes
	}
	s := &Server{o: o, log: o.Logger, mem: memory.NewGoAllocator(), met: newMetrics(o.Metrics)}
	sqlSrv := newSQLServer(s)
	s.sql = flightsql.NewFlightServerWithAllocator(sqlSrv, s.mem)
	s.svc = &service{s: s}
	return s
}

// Register adds the Flight service and the gRPC health service to g, whose
// interceptors must include Interceptors().
func (s *Server) Register(g *grpc.Server) {
	aflight.RegisterFlightServiceServer(g, s.svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("arrow.flight.protocol.FlightService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
}

// ServerOptions returns the interceptors that verify the identity assertion
// of every Flight call (health checks excepted).
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Record batches are megabytes: fewer, larger writes.
		grpc.WriteBufferSize(256 << 10),
		grpc.ChainUnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(s.stream),
	}
}

// authenticate returns ctx with the principal of the call's assertion and
// its request id, or the status that refuses the call. The assertion must
// be for the Flight listener, issued for this call (method POST, path the
// gRPC method, and body the hash of its request descriptor, "" for a
// stream: see descriptorHash), and not spent before: it is spent here.
// Refusals: UNAUTHENTICATED for a missing, invalid, foreign (another
// listener's) or spent assertion; PERMISSION_DENIED for one issued for
// another call; UNAVAILABLE when the replay cache is full.
func (s *Server) authenticate(ctx context.Context, method, body string) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if ids := md.Get("x-request-id"); len(ids) > 0 {
		ctx = core.WithRequestID(ctx, ids[0])
	}
	var tok string
	if v := md.Get(assertion.Header); len(v) == 1 {
		tok = v[0]
	}
	refuse := func(code core.Code, msg string, err error) (context.Context, error) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "refused Flight call: "+msg,
			slog.String("request_id", core.RequestIDFrom(ctx)), slog.String("method", method), slog.String("err", err.Error()))
		return nil, s.toStatus(ctx, method, &core.Error{Op: "flightsvc.authenticate", Code: code, Message: msg, Err: err})
	}
	a, err := s.o.Verifier.Verify(tok, assertion.AudienceFlight)
	if err == nil {
		err = s.o.Verifier.Spend(a)
	}
	switch {
	case errors.Is(err, assertion.ErrReplayCacheFull):
		return refuse(core.CodeUnavailable, "service unavailable", err)
	case err != nil:
		return refuse(core.CodeUnauthenticated, "authentication required", err)
	}
	// gRPC is always POST; the assertion names it as Envoy saw it.
	if err := a.Check("POST", method, "", body); err != nil {
		return refuse(core.CodeForbidden, "the identity assertion was issued for another call", err)
	}
	return core.WithPrincipal(ctx, a.Principal), nil
}

// descriptorHash is the body hash the assertion binds for a unary call's
// request: for a FlightDescriptor (GetFlightInfo, GetSchema,
// PollFlightInfo, whose body Envoy shows extauthz), the hex SHA-256 of its
// protobuf encoding, which is the bytes the client sent whenever it
// encodes canonically (fields in number order, as every protobuf library
// writes them); "" for any other request. A descriptor sent otherwise
// hashes differently and the call is refused: the core cannot run a
// descriptor other than the one extauthz decided on.
func descriptorHash(req any) (string, error) {
	d, ok := req.(*aflight.FlightDescriptor)
	if !ok {
		return "", nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func isHealth(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.Health/") }

func (s *Server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if isHealth(info.FullMethod) {
		return h(ctx, req)
	}
	start := time.Now()
	body, err := descriptorHash(req)
	if err != nil {
		err = s.toStatus(ctx, info.FullMethod, &core.Error{Op: "flightsvc.descriptorHash", Code: core.CodeInvalid, Message: "malformed request", Err: err})
		s.met.observe(info.FullMethod, err, time.Since(start))
		return nil, err
	}
	ctx, err = s.authenticate(ctx, info.FullMethod, body)
	if err != nil {
		s.met.observe(info.FullMethod, err, time.Since(start))
		return nil, err
	}
	var resp any
	err = s.toStatus(ctx, info.FullMethod, guarded(func() (err error) {
		resp, err = h(ctx, req)
		return err
	}))
	s.met.observe(info.FullMethod, err, time.Since(start))
	return resp, err
}

func (s *Server) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if isHealth(info.FullMethod) {
		return h(srv, ss)
	}
	start := time.Now()
	// A stream's messages are not buffered for extauthz: its assertion
	// binds the method and path alone.
	ctx, err := s.authenticate(ss.Context(), info.FullMethod, "")
	if err == nil {
		err = s.toStatus(ctx, info.FullMethod, guarded(func() error { return h(srv, &ctxStream{ServerStream: ss, ctx: ctx}) }))
	}
	s.met.observe(info.FullMethod, err, time.Since(start))
	return err
}

// guarded calls f, turning a panic into an internal error for the edge:
// gRPC does not recover a handler's panic, so one bad call would end the
// process and every other call with it.
func guarded(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = core.E("flightsvc", core.CodeInternal, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
		}
	}()
	return f()
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

// toStatus is the Flight transport's edge: every error a call answers
// leaves through it (the interceptors pass each call's final error
// through it, which catches the Flight SQL library's own). It translates
// err through the table, counts it in fraise_errors_total by core code,
// and logs an internal error once, here, with the request id (the
// process's log handler adds the trace id from ctx). Errors that already
// are statuses (from the Flight SQL library) pass unchanged, counted by
// their gRPC code's name; an error that already left through here passes
// unchanged and uncounted.
func (s *Server) toStatus(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var done *edgeError
	if errors.As(err, &done) {
		return done
	}
	var ce *core.Error
	if !errors.As(err, &ce) {
		if st, ok := status.FromError(err); ok {
			s.met.failed(st.Code().String())
			return &edgeError{st}
		}
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// The client went away, as the GraphQL engine counts it.
		s.met.failed(string(core.CodeUnavailable))
		return &edgeError{status.New(codes.Canceled, "cancelled")}
	}
	c := core.ErrorCode(err)
	s.met.failed(string(c))
	if c == core.CodeInternal {
		s.log.LogAttrs(ctx, slog.LevelError, "flight call failed", slog.String("op", op), slog.String("code", string(c)),
			slog.String("request_id", core.RequestIDFrom(ctx)), slog.String("err", err.Error()))
	}
	return &edgeError{status.New(CodeOf(err), core.ErrorMessage(err))}
}

// edgeError is a status that left through toStatus: counted, and logged
// if it had to be.
type edgeError struct{ st *status.Status }

func (e *edgeError) Error() string { return e.st.Err().Error() }

// GRPCStatus lets gRPC send the status.
func (e *edgeError) GRPCStatus() *status.Status { return e.st }

func principal(ctx context.Context) (core.Principal, error) {
	p, ok := core.PrincipalFrom(ctx)
	if !ok {
		return core.Principal{}, core.Errorf(core.CodeUnauthenticated, "authentication required")
	}
	return p, nil
}

// prepare resolves q for p: the dataset must be exportable to p and the
// query must compile against it, with the field protection p's scopes
// call for.
func (s *Server) prepare(p core.Principal, q flight.Query) (*flight.Dataset, flight.Statement, error) {
	d, err := s.o.Catalog.Lookup(p, q.Dataset)
	if err != nil {
		return nil, flight.Statement{}, err
	}
	st, err := flight.Compile(d, q, p)
	if err != nil {
		return nil, flight.Statement{}, err
	}
	return d, st, nil
}

// flightInfo describes an export of st answered with tickets, one
// endpoint each; ordered says whether reading the endpoints one after
// another gives the rows in the query's order.
func (s *Server) flightInfo(desc *aflight.FlightDescriptor, st flight.Statement, tickets [][]byte, ordered bool) *aflight.FlightInfo {
	schema, _ := flight.StatementSchema(st)
	eps := make([]*aflight.FlightEndpoint, len(tickets))
	for i, t := range tickets {
		eps[i] = &aflight.FlightEndpoint{Ticket: &aflight.Ticket{Ticket: t}}
	}
	return &aflight.FlightInfo{
		Schema:           aflight.SerializeSchema(schema, s.mem),
		FlightDescriptor: desc,
		Endpoint:         eps,
		TotalRecords:     -1,
		TotalBytes:       -1,
		Ordered:          ordered,
	}
}

// issue answers GetFlightInfo for q: the schema and tickets for DoGet. With
// parallel, a query over a dataset declared with endpoints is split into
// parts over one snapshot (split), one ticket each.
func (s *Server) issue(ctx context.Context, desc *aflight.FlightDescriptor, q flight.Query, wrap func([]byte) ([]byte, error), parallel bool) (*aflight.FlightInfo, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	d, st, err := s.prepare(p, q)
	if err != nil {
		return nil, err
	}
	queries := []flight.Query{q}
	var snapshot string
	if parallel {
		if parts, id, err := s.split(ctx, p, d, q); err != nil {
			return nil, err
		} else if parts != nil {
			queries, snapshot = parts, id
		}
	}
	tickets := make([][]byte, len(queries))
	for i, pq := range queries {
		t, _, err := s.o.Tickets.Issue(p, flight.KindTicket, pq, 0)
		if err == nil && wrap != nil {
			if t, err = wrap(t); err != nil {
				err = core.E("flightsvc.issue", core.CodeInternal, err)
			}
		}
		if err != nil {
			if snapshot != "" {
				s.o.Source.(flight.Partitioner).Release(snapshot)
			}
			return nil, err
		}
		tickets[i] = t
	}
	return s.flightInfo(desc, st, tickets, len(q.Order) > 0), nil
}

// split returns the parts of q, one per endpoint, over a snapshot it opens
// (and its id), or nil when q is read as one stream: the dataset has one
// endpoint, q cannot be split (flight.SplitKey), the source cannot, or the
// rows are too few. The parts are at most the dataset's endpoints and the
// tenant's bound on exports, so that reading every endpoint at once fits
// in the tenant's share.
func (s *Server) split(ctx context.Context, p core.Principal, d *flight.Dataset, q flight.Query) ([]flight.Query, string, error) {
	src, ok := s.o.Source.(flight.Partitioner)
	if !ok {
		return nil, "", nil
	}
	key, ok := flight.SplitKey(d, q, p)
	if !ok {
		return nil, "", nil
	}
	kq := q
	kq.Columns, kq.Order = []string{key.Name}, nil
	_, keys, err := s.prepare(p, kq)
	if err != nil {
		return nil, "", err
	}
	snap, bound, err := src.Snapshot(ctx, p.Tenant, keys, s.o.Tickets.TTL())
	if err != nil {
		return nil, "", err
	}
	parts := flight.Split(q, key, snap, min(d.Endpoints, bound))
	if parts == nil {
		src.Release(snap.ID)
		return nil, "", nil
	}
	return parts, snap.ID, nil
}

// export runs the query of a verified ticket and streams it to w.
func (s *Server) export(ctx context.Context, ticket []byte, stream aflight.FlightService_DoGetServer) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	q, err := s.o.Tickets.Verify(p, flight.KindTicket, ticket)
	if err != nil {
		return err
	}
	_, st, err := s.prepare(p, q)
	if err != nil {
		return err
	}
	schema, _ := flight.StatementSchema(st)
	start := time.Now()
	var rows, size int64 // written by the writer goroutine, read after done
	w := aflight.NewRecordWriter(stream, ipc.WithSchema(schema), ipc.WithAllocator(s.mem))
	// The database is read on this goroutine and the stream written on
	// another, so PostgreSQL keeps producing while gRPC drains: one batch
	// building, one queued, one being written bound an export's memory.
	batches := make(chan arrow.RecordBatch, 1)
	stop := make(chan struct{}) // closed when the writer fails
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rec := range batches {
			if werr == nil {
				n, b := rec.NumRows(), util.TotalRecordSize(rec)
				rows, size = rows+n, size+b
				s.met.exported(n, b)
				if err := w.Write(rec); err != nil {
					werr = core.E("flightsvc.DoGet", core.CodeUnavailable, err)
					close(stop)
				}
			}
			rec.Release()
		}
		if err := w.Close(); err != nil && werr == nil {
			werr = core.E("flightsvc.DoGet", core.CodeUnavailable, err)
		}
	}()
	err = s.o.Source.Export(ctx, p.Tenant, st, s.o.Batch, func(rec arrow.RecordBatch) error {
		rec.Retain()
		select {
		case batches <- rec:
			return nil
		case <-stop:
		case <-ctx.Done():
		}
		rec.Release()
		return core.Errorf(core.CodeUnavailable, "client stream closed")
	})
	close(batches)
	<-done
	if err == nil {
		err = werr
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "flight export",
		slog.String("request_id", core.RequestIDFrom(ctx)), slog.String("tenant", p.Tenant),
		slog.String("dataset", q.Dataset), slog.Int64("rows", rows), slog.Int64("bytes", size),
		slog.Duration("duration", time.Since(start)), slog.String("code", string(core.ErrorCode(err))))
	return err
}

// queryOf reads a descriptor of ours: a PATH naming a dataset (all of it) or
// a CMD holding a JSON dataset query. ok is false for other descriptors
// (Flight SQL's commands).
func queryOf(desc *aflight.FlightDescriptor) (flight.Query, bool, error) {
	if desc == nil {
		return flight.Query{}, true, core.Errorf(core.CodeInvalid, "missing descriptor")
	}
	switch desc.Type {
	case aflight.DescriptorPATH:
		if len(desc.Path) == 0 {
			return flight.Query{}, true, core.Errorf(core.CodeInvalid, "empty descriptor path")
		}
		return flight.Query{Dataset: strings.Join(desc.Path, ".")}, true, nil
	case aflight.DescriptorCMD:
		cmd := strings.TrimLeft(string(desc.Cmd), " \t\r\n")
		if !strings.HasPrefix(cmd, "{") {
			return flight.Query{}, false, nil
		}
		q, err := flight.ParseCommand(desc.Cmd)
		return q, true, err
	}
	return flight.Query{}, true, core.Errorf(core.CodeInvalid, "unknown descriptor type")
}

// service is the FlightService: our descriptors and tickets are handled
// here, everything else (Flight SQL's commands) by the flightsql server.
type service struct {
	aflight.BaseFlightServer
	s *Server
}

func (v *service) ListFlights(_ *aflight.Criteria, stream aflight.FlightService_ListFlightsServer) error {
	ctx := stream.Context()
	p, err := principal(ctx)
	if err != nil {
		return v.s.toStatus(ctx, "ListFlights", err)
	}
	for _, d := range v.s.o.Catalog.List(p) {
		desc := &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: d.Path()}
		// A listing opens no snapshot: its tickets read each dataset whole.
		info, err := v.s.issue(ctx, desc, flight.Query{Dataset: d.Name}, nil, false)
		if err != nil {
			return v.s.toStatus(ctx, "ListFlights", err)
		}
		if err := stream.Send(info); err != nil {
			return err
		}
	}
	return nil
}

func (v *service) GetFlightInfo(ctx context.Context, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	q, ours, err := queryOf(desc)
	if !ours {
		return v.s.sql.GetFlightInfo(ctx, desc)
	}
	if err != nil {
		return nil, v.s.toStatus(ctx, "GetFlightInfo", err)
	}
	info, err := v.s.issue(ctx, desc, q, nil, true)
	return info, v.s.toStatus(ctx, "GetFlightInfo", err)
}

func (v *service) PollFlightInfo(ctx context.Context, desc *aflight.FlightDescriptor) (*aflight.PollInfo, error) {
	q, ours, err := queryOf(desc)
	if !ours {
		return v.s.sql.PollFlightInfo(ctx, desc)
	}
	if err != nil {
		return nil, v.s.toStatus(ctx, "PollFlightInfo", err)
	}
	info, err := v.s.issue(ctx, desc, q, nil, true)
	if err != nil {
		return nil, v.s.toStatus(ctx, "PollFlightInfo", err)
	}
	return &aflight.PollInfo{Info: info}, nil
}

func (v *service) GetSchema(ctx context.Context, desc *aflight.FlightDescriptor) (*aflight.SchemaResult, error) {
	q, ours, err := queryOf(desc)
	if !ours {
		return v.s.sql.GetSchema(ctx, desc)
	}
	if err != nil {
		return nil, v.s.toStatus(ctx, "GetSchema", err)
	}
	p, err := principal(ctx)
	if err != nil {
		return nil, v.s.toStatus(ctx, "GetSchema", err)
	}
	_, st, err := v.s.prepare(p, q)
	if err != nil {
		return nil, v.s.toStatus(ctx, "GetSchema", err)
	}
	schema, _ := flight.StatementSchema(st)
	return &aflight.SchemaResult{Schema: aflight.SerializeSchema(schema, v.s.mem)}, nil
}

func (v *service) DoGet(t *aflight.Ticket, stream aflight.FlightService_DoGetServer) error {
	ctx := stream.Context()
	ticket := t.GetTicket()
	if !flight.IsTicket(ticket) {
		// A Flight SQL statement ticket wraps one of ours as its handle.
		var a anypb.Any
		if proto.Unmarshal(ticket, &a) == nil {
			var tq pb.TicketStatementQuery
			if a.MessageIs(&tq) && a.UnmarshalTo(&tq) == nil {
				ticket = tq.GetStatementHandle()
			}
		}
	}
	if !flight.IsTicket(ticket) {
		return v.s.sql.DoGet(t, stream)
	}
	return v.s.toStatus(ctx, "DoGet", v.s.export(ctx, ticket, stream))
}

func (v *service) DoPut(stream aflight.FlightService_DoPutServer) error { return v.s.sql.DoPut(stream) }

func (v *service) DoAction(a *aflight.Action, stream aflight.FlightService_DoActionServer) error {
	return v.s.sql.DoAction(a, stream)
}

func (v *service) ListActions(e *aflight.Empty, stream aflight.FlightService_ListActionsServer) error {
	return v.s.sql.ListActions(e, stream)
}
