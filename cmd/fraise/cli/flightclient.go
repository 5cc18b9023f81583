package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func init() {
	commands["flight"] = command{"flight list | get | sql: list Flight datasets, export one to Arrow IPC, Parquet or CSV", runFlight}
}

// flightClientFlags are what every `fraise flight` subcommand reads: where
// the ingress is, the client certificate it presents and the bearer token.
type flightClientFlags struct {
	cfgPath, addr, token, ca, cert, key, serverName *string
}

func newFlightFlags(name string, env Env) (*flag.FlagSet, flightClientFlags) {
	fs, cfg := flags(name, env)
	return fs, flightClientFlags{
		cfgPath:    cfg,
		addr:       fs.String("addr", "", "the ingress (Envoy) address, host:port (default gateway.listen_addr)"),
		token:      fs.String("token", env.Getenv("FRAISE_TOKEN"), "bearer token (default $FRAISE_TOKEN); fraise token --roles analyst mints one"),
		ca:         fs.String("ca", "", "CA certificate file (default tls.ca)"),
		cert:       fs.String("cert", "", "client certificate file (default tls.client_cert)"),
		key:        fs.String("key", "", "client key file (default tls.client_key)"),
		serverName: fs.String("server-name", "", "the name the ingress's certificate is checked for (default tls.server_name)"),
	}
}

// dial connects to the ingress over mTLS with the bearer token on every
// call. What the flags leave out comes from the configuration.
func (f flightClientFlags) dial(ctx context.Context, env Env) (*flightsql.Client, context.Context, error) {
	cfg, _, err := loadConfig(*f.cfgPath, env)
	if err != nil {
		return nil, nil, err
	}
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	addr := or(*f.addr, cfg.Gateway.ListenAddr)
	if *f.token == "" {
		return nil, nil, errors.New("flight: --token is required (or FRAISE_TOKEN): mint one with `fraise token --tenant ID --subject NAME --roles analyst`")
	}
	cert, err := tls.LoadX509KeyPair(or(*f.cert, cfg.TLS.ClientCert), or(*f.key, cfg.TLS.ClientKey))
	if err != nil {
		return nil, nil, fmt.Errorf("flight: --cert/--key (tls.client_cert, tls.client_key): %w (run `fraise certs`)", err)
	}
	pool, err := loadCAPool(or(*f.ca, cfg.TLS.CA))
	if err != nil {
		return nil, nil, fmt.Errorf("flight: --ca (tls.ca): %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: or(*f.serverName, cfg.TLS.ServerName), MinVersion: tls.VersionTLS12}
	c, err := flightsql.NewClientCtx(ctx, addr, nil, nil,
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
		grpc.WithInitialWindowSize(16<<20), grpc.WithInitialConnWindowSize(32<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("flight: --addr %s: %w", addr, err)
	}
	return c, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*f.token), nil
}

// runFlight is `fraise flight list|get|sql`.
func runFlight(ctx context.Context, env Env, args []string) error {
	// Run has answered `fraise flight` and `fraise flight --help`.
	if len(args) == 0 {
		return errors.New("flight: want list, get or sql")
	}
	switch args[0] {
	case "list":
		return runFlightList(ctx, env, args[1:])
	case "get":
		return runFlightGet(ctx, env, args[1:])
	case "sql":
		return runFlightSQL(ctx, env, args[1:])
	}
	subcommandUsage(env.Stderr, "flight")
	return fmt.Errorf("flight: unknown subcommand %q: want list, get or sql", args[0])
}

func runFlightList(ctx context.Context, env Env, args []string) error {
	fs, ff := newFlightFlags("flight list", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("flight list: unexpected argument %q (it takes flags only)", fs.Arg(0))
	}
	c, ctx, err := ff.dial(ctx, env)
	if err != nil {
		return err
	}
	defer c.Close()
	stream, err := c.Client.ListFlights(ctx, &flight.Criteria{})
	if err != nil {
		return flightError("flight list", err)
	}
	type row struct{ name, cols string }
	var rows []row
	for {
		info, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return flightError("flight list", err)
		}
		name := strings.Join(info.GetFlightDescriptor().GetPath(), ".")
		var cols []string
		if s, err := flight.DeserializeSchema(info.GetSchema(), memory.DefaultAllocator); err == nil {
			for _, f := range s.Fields() {
				t := f.Type.String()
				if pg, ok := f.Metadata.GetValue("fraise.pg_type"); ok {
					t = pg
				}
				cols = append(cols, f.Name+" "+t)
			}
		}
		rows = append(rows, row{name, strings.Join(cols, ", ")})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	for _, r := range rows {
		fmt.Fprintf(env.Stdout, "%s\t%s\n", r.name, r.cols)
	}
	if len(rows) == 0 {
		fmt.Fprintln(env.Stderr, "fraise flight list: no dataset this token may export (see flight.datasets in docs/flight.md)")
	}
	return nil
}

// exportFlags are the output flags of get and sql.
type exportFlags struct{ format, output *string }

func newExportFlags(fs *flag.FlagSet) exportFlags {
	return exportFlags{
		format: fs.String("format", "", "arrow (Arrow IPC stream), parquet or csv (default: from --output's extension, else arrow)"),
		output: fs.String("output", "-", "write here (- is standard output)"),
	}
}

func runFlightGet(ctx context.Context, env Env, args []string) error {
	fs, ff := newFlightFlags("flight get", env)
	ef := newExportFlags(fs)
	columns := fs.String("columns", "", "comma-separated columns to export (default all)")
	where := fs.String("where", "", `a filter as JSON, GraphQL's where shape: '{"minutes": {"gte": 5}}'`)
	limit := fs.Int("limit", 0, "export at most this many rows (0: all)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("flight get: name one dataset (`fraise flight list` lists them): fraise flight get [flags] DATASET")
	}
	dataset := pos[0]
	desc := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: strings.Split(dataset, ".")}
	if *columns != "" || *where != "" || *limit != 0 {
		// A query is a CMD descriptor: the JSON docs/flight.md describes.
		q := map[string]any{"dataset": dataset}
		if *columns != "" {
			q["columns"] = splitList(*columns)
		}
		if *where != "" {
			var w any
			if err := json.Unmarshal([]byte(*where), &w); err != nil {
				return fmt.Errorf("flight get: --where is not JSON: %w", err)
			}
			q["where"] = w
		}
		if *limit < 0 {
			return errors.New("flight get: --limit must be 0 (all) or more")
		} else if *limit > 0 {
			q["limit"] = *limit
		}
		b, _ := json.Marshal(q)
		desc = &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: b}
	}
	w, format, done, err := ef.open(env)
	if err != nil {
		return err
	}
	c, ctx, err := ff.dial(ctx, env)
	if err != nil {
		done()
		return err
	}
	defer c.Close()
	info, err := c.Client.GetFlightInfo(ctx, desc)
	if err != nil {
		done()
		return flightError("flight get "+dataset, err)
	}
	return finishExport(ctx, env, c, info, w, format, *ef.output, done)
}

func runFlightSQL(ctx context.Context, env Env, args []string) error {
	fs, ff := newFlightFlags("flight sql", env)
	ef := newExportFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New(`flight sql: give one statement, quoted: fraise flight sql [flags] "SELECT id, title FROM blog.posts"`)
	}
	w, format, done, err := ef.open(env)
	if err != nil {
		return err
	}
	c, ctx, err := ff.dial(ctx, env)
	if err != nil {
		done()
		return err
	}
	defer c.Close()
	info, err := c.Execute(ctx, pos[0])
	if err != nil {
		done()
		return flightError("flight sql", err)
	}
	return finishExport(ctx, env, c, info, w, format, *ef.output, done)
}

// parseInterspersed parses args with fs, flags before or after the
// positional arguments (`get people.users --format csv` as well as `get
// --format csv people.users`), and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// open opens the output and settles the format: --format, else the
// output's extension, else Arrow IPC. done closes the output.
func (ef exportFlags) open(env Env) (io.Writer, string, func() error, error) {
	format := strings.ToLower(*ef.format)
	if format == "" {
		switch {
		case strings.HasSuffix(*ef.output, ".parquet"):
			format = "parquet"
		case strings.HasSuffix(*ef.output, ".csv"):
			format = "csv"
		default:
			format = "arrow"
		}
	}
	switch format {
	case "arrow", "parquet", "csv":
	default:
		return nil, "", nil, fmt.Errorf("flight: --format %q: want arrow, parquet or csv", *ef.format)
	}
	if *ef.output == "-" || *ef.output == "" {
		return env.Stdout, format, func() error { return nil }, nil
	}
	f, err := os.Create(*ef.output)
	if err != nil {
		return nil, "", nil, fmt.Errorf("flight: --output: %w", err)
	}
	return f, format, f.Close, nil
}

// finishExport redeems info's tickets and writes their batches to w in
// format, with a progress line on standard error.
func finishExport(ctx context.Context, env Env, c *flightsql.Client, info *flight.FlightInfo, w io.Writer, format, output string, done func() error) error {
	err := export(ctx, env, c, info, w, format, output)
	if cerr := done(); err == nil {
		err = cerr
	}
	return err
}

func export(ctx context.Context, env Env, c *flightsql.Client, info *flight.FlightInfo, w io.Writer, format, output string) error {
	schema, err := flight.DeserializeSchema(info.GetSchema(), memory.DefaultAllocator)
	if err != nil {
		return fmt.Errorf("flight: the answer's schema: %w", err)
	}
	sink, err := newSink(w, schema, format)
	if err != nil {
		return err
	}
	p := progress{w: env.Stderr, start: time.Now(), output: output, format: format}
	for _, ep := range info.GetEndpoint() {
		rdr, err := c.DoGet(ctx, ep.GetTicket())
		if err != nil {
			sink.close()
			return flightError("flight DoGet", err)
		}
		for rdr.Next() {
			rec := rdr.RecordBatch()
			if err := sink.write(rec); err != nil {
				rdr.Release()
				sink.close()
				return fmt.Errorf("flight: writing %s: %w", format, err)
			}
			p.add(rec.NumRows())
		}
		err = rdr.Err()
		rdr.Release()
		if err != nil {
			sink.close()
			return flightError("flight DoGet", err)
		}
	}
	if err := sink.close(); err != nil {
		return fmt.Errorf("flight: writing %s: %w", format, err)
	}
	p.finish()
	return nil
}

// progress prints how far an export is on standard error: at most a line
// a second while batches arrive, and a last one.
type progress struct {
	w              io.Writer
	start, last    time.Time
	rows, batches  int64
	output, format string
}

func (p *progress) add(rows int64) {
	p.rows += rows
	p.batches++
	if now := time.Now(); now.Sub(p.last) >= time.Second && now.Sub(p.start) >= time.Second {
		p.last = now
		fmt.Fprintf(p.w, "fraise flight: %d rows in %d batches so far (%s)\n", p.rows, p.batches, now.Sub(p.start).Round(time.Millisecond))
	}
}

func (p *progress) finish() {
	to := p.output
	if to == "-" || to == "" {
		to = "standard output"
	}
	fmt.Fprintf(p.w, "fraise flight: %d rows in %d batches, %s to %s, in %s\n", p.rows, p.batches, p.format, to, time.Since(p.start).Round(time.Millisecond))
}

// sink writes record batches in one format.
type sink struct {
	write func(arrow.RecordBatch) error
	close func() error
}

func newSink(w io.Writer, schema *arrow.Schema, format string) (sink, error) {
	switch format {
	case "parquet":
		// Without its Close: the writer closes an io.Closer it writes to,
		// and the output (standard output, or the file) is closed by its
		// owner.
		pw, err := pqarrow.NewFileWriter(schema, struct{ io.Writer }{w}, nil, pqarrow.DefaultWriterProps())
		if err != nil {
			return sink{}, fmt.Errorf("flight: parquet: %w", err)
		}
		return sink{write: pw.WriteBuffered, close: pw.Close}, nil
	case "csv":
		cw := csv.NewWriter(w, schema, csv.WithHeader(true), csv.WithNullWriter(""), csv.WithCustomTypeConverter(uuidText))
		return sink{write: cw.Write, close: func() error { cw.Flush(); return cw.Error() }}, nil
	default:
		iw := ipc.NewWriter(w, ipc.WithSchema(schema))
		return sink{write: iw.Write, close: iw.Close}, nil
	}
}

// uuidText writes a uuid column (16 fixed bytes, fraise.pg_type uuid) as
// its text, not base64 of its bytes.
func uuidText(typ arrow.DataType, col arrow.Array) ([]string, bool) {
	fb, ok := typ.(*arrow.FixedSizeBinaryType)
	if !ok || fb.ByteWidth != 16 {
		return nil, false
	}
	a := col.(*array.FixedSizeBinary)
	out := make([]string, a.Len())
	for i := range out {
		if a.IsValid(i) {
			out[i] = uuid.UUID(a.Value(i)).String()
		}
	}
	return out, true
}

// flightError names what went wrong in the terms of the fix.
func flightError(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	hint := ""
	switch st.Code() {
	case codes.Unauthenticated:
		hint = " (is --token a fresh token of this stack? `fraise token` mints one)"
	case codes.PermissionDenied:
		hint = " (the token's roles may not do this: exports need analyst, operator or admin)"
	case codes.NotFound:
		hint = " (`fraise flight list` lists the datasets this token may export)"
	case codes.Unavailable:
		hint = " (is the stack running, and --addr its ingress?)"
	}
	return fmt.Errorf("%s: %s: %s%s", op, st.Code(), st.Message(), hint)
}
