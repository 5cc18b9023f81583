// Package flightsvc serves Fraise's Arrow Flight exports over gRPC: the
// Flight service (ListFlights, GetSchema, GetFlightInfo answered with signed
// tickets, DoGet streaming record batches) and, on the same FlightService,
// Flight SQL for standard clients such as the ADBC driver. It is a
// transport only: it authenticates each call (extauthz's identity
// assertion in its metadata, exactly like the HTTP port), maps Flight and
// Flight SQL messages to core/flight's Service, and maps the Service's
// errors to gRPC statuses through one edge (toStatus).
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
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// Options configures the Flight service.
type Options struct {
	Verifier *assertion.Verifier
	// Service is the use case every call is mapped to.
	Service *flight.Service
	Logger  *slog.Logger
	// Version is reported through Flight SQL's SqlInfo.
	Version string
	// Metrics, when set, receives the service's metrics.
	Metrics prometheus.Registerer
}

// Catalog is the Flight SQL catalog every dataset belongs to.
const Catalog = flight.SQLCatalog

// PreparedTTL is how long a prepared statement handle stays valid.
const PreparedTTL = flight.PreparedTTL

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
	app *flight.Service
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
	s := &Server{o: o, app: o.Service, log: o.Logger, mem: memory.NewGoAllocator(), met: newMetrics(o.Metrics)}
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
		return nil, s.toStatus(ctx, method, core.Errorf(code, "%s", msg).WithOp("flightsvc.authenticate").Wrap(err))
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
		err = s.toStatus(ctx, info.FullMethod, core.Errorf(core.CodeInvalid, "malformed request").WithOp("flightsvc.descriptorHash").Wrap(err))
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
	st := status.New(CodeOf(err), core.ErrorMessage(err))
	if d, ok := core.RetryAfter(err); ok && (c == core.CodeRateLimited || c == core.CodeUnavailable) {
		// gRPC's Retry-After is the google.rpc.RetryInfo detail: the delay
		// the refusal gave (admission.retry_after), never a constant.
		if withInfo, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); derr == nil {
			st = withInfo
		}
	}
	return &edgeError{st}
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

// flightInfo answers a plan of desc: its schema and one endpoint per
// ticket.
func (s *Server) flightInfo(desc *aflight.FlightDescriptor, pl flight.Plan) *aflight.FlightInfo {
	eps := make([]*aflight.FlightEndpoint, len(pl.Tickets))
	for i, t := range pl.Tickets {
		eps[i] = &aflight.FlightEndpoint{Ticket: &aflight.Ticket{Ticket: t}}
	}
	return &aflight.FlightInfo{
		Schema:           aflight.SerializeSchema(pl.Schema, s.mem),
		FlightDescriptor: desc,
		Endpoint:         eps,
		TotalRecords:     -1,
		TotalBytes:       -1,
		Ordered:          pl.Ordered,
	}
}

// plan answers GetFlightInfo for q: its schema and the tickets for DoGet,
// split into parallel endpoints where the dataset allows. encode, when
// set, wraps each ticket (Flight SQL's statement tickets).
func (s *Server) plan(ctx context.Context, desc *aflight.FlightDescriptor, q flight.Query, encode func([]byte) ([]byte, error)) (*aflight.FlightInfo, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	pl, err := s.app.Plan(ctx, p, q, flight.PlanOptions{Parallel: true, Encode: encode})
	if err != nil {
		return nil, err
	}
	return s.flightInfo(desc, pl), nil
}

// recordWriter writes an export to a DoGet stream as Arrow IPC messages,
// counting what it sends.
type recordWriter struct {
	stream aflight.FlightService_DoGetServer
	mem    memory.Allocator
	met    *metrics
	w      *aflight.Writer
}

func (r *recordWriter) Begin(schema *arrow.Schema) error {
	r.w = aflight.NewRecordWriter(r.stream, ipc.WithSchema(schema), ipc.WithAllocator(r.mem))
	return nil
}

func (r *recordWriter) Write(rec arrow.RecordBatch) error {
	r.met.exported(rec.NumRows(), util.TotalRecordSize(rec))
	if err := r.w.Write(rec); err != nil {
		return core.E("flightsvc.DoGet", core.CodeUnavailable, err)
	}
	return nil
}

// close ends the stream (the schema alone, if no batch was written); err
// is the export's outcome, which a failure to close does not hide.
func (r *recordWriter) close(err error) error {
	if r.w == nil {
		return err
	}
	if cerr := r.w.Close(); cerr != nil && err == nil {
		err = core.E("flightsvc.DoGet", core.CodeUnavailable, cerr)
	}
	return err
}

// export redeems ticket, streaming its rows to stream.
func (s *Server) export(ctx context.Context, ticket []byte, stream aflight.FlightService_DoGetServer) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	w := &recordWriter{stream: stream, mem: s.mem, met: s.met}
	return w.close(s.app.Export(ctx, p, ticket, w))
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
	plans, err := v.s.app.List(ctx, p)
	if err != nil {
		return v.s.toStatus(ctx, "ListFlights", err)
	}
	for _, pl := range plans {
		desc := &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: pl.Dataset.Path()}
		if err := stream.Send(v.s.flightInfo(desc, pl)); err != nil {
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
	info, err := v.s.plan(ctx, desc, q, nil)
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
	info, err := v.s.plan(ctx, desc, q, nil)
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
	schema, err := v.s.app.Schema(p, q)
	if err != nil {
		return nil, v.s.toStatus(ctx, "GetSchema", err)
	}
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
