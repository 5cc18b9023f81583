package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/util"
	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/core/assertion"
	"github.com/fraise-dev/fraise/core/assertion/assertiontest"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// benchColumns are the ten mixed columns every way of exporting reads.
const benchColumns = "id, i4, i2, f8, num, flag, label, uid, day, ts"

func benchSetupSQL(rows int) string {
	return fmt.Sprintf(`
CREATE TABLE public.bench_rows (
    tenant_id uuid NOT NULL, id int8 PRIMARY KEY, i4 int4, i2 int2, f8 float8, num numeric(12,2),
    flag bool, label text, uid uuid, day date, ts timestamptz
);
INSERT INTO public.bench_rows
SELECT '%s', g, g %% 100000, g %% 30000, g * 0.25, (g %% 100000) / 100.0, g %% 2 = 0,
       'label-' || g, md5(g::text)::uuid, date '2020-01-01' + g %% 3650,
       timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, %d) g;
ALTER TABLE public.bench_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.bench_rows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.bench_rows
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);
CREATE VIEW public.v_bench WITH (security_invoker = true) AS SELECT %s FROM public.bench_rows;
CREATE VIEW public.v_bench_json WITH (security_invoker = true) AS
    SELECT id, tenant_id, jsonb_build_object('id', id, 'i4', i4, 'i2', i2, 'f8', f8, 'num', num, 'flag', flag,
        'label', label, 'uid', uid, 'day', day, 'ts', ts) AS data
    FROM public.bench_rows;
GRANT SELECT ON public.bench_rows, public.v_bench, public.v_bench_json TO fraise_app;
ANALYZE public.bench_rows;
`, demo.TenantAcme, rows, benchColumns)
}

const benchTOML = `
[[flight.datasets]]
name = "bench"
view = "public.v_bench"
columns = [
  { name = "id", type = "int8" }, { name = "i4", type = "int4" }, { name = "i2", type = "int2" },
  { name = "f8", type = "float8" }, { name = "num", type = "numeric(12,2)" }, { name = "flag", type = "bool" },
  { name = "label", type = "text" }, { name = "uid", type = "uuid" }, { name = "day", type = "date" },
  { name = "ts", type = "timestamptz" },
]
`

const benchSDL = `
type BenchRow @view(name: "v_bench_json") {
  id: ID!
  i4: Int!
  i2: Int!
  f8: Float!
  num: Float!
  flag: Boolean!
  label: String!
  uid: String!
  day: String!
  ts: String!
}
type Query {
  benchRows(limit: Int): [BenchRow!]!
}
`

// BenchmarkExport exports the same rows of ten mixed columns three ways:
// Flight DoGet through the gateway (mTLS, ext_authz, rate limit), the same
// rows as GraphQL JSON over HTTP through the gateway, and raw COPY ... TO
// STDOUT (FORMAT binary) read by pgx and discarded, the ceiling.
func BenchmarkExport(b *testing.B) {
	rows := 1_000_000
	if os.Getenv("CI") != "" {
		rows = 100_000
	}
	dir := b.TempDir()
	sdl := filepath.Join(dir, "bench.graphql")
	if err := os.WriteFile(sdl, []byte(benchSDL), 0o600); err != nil {
		b.Fatal(err)
	}
	s := stack.StartWith(b, stack.Options{
		TOML: benchTOML, SetupSQL: benchSetupSQL(rows), PerTenant: 100000,
		Env: map[string]string{
			"FRAISE_CORE_SCHEMA": sdl, "FRAISE_CORE_MAX_LIMIT": fmt.Sprint(rows),
			// The JSON leg answers every row in one response: lift the cost
			// and result-size limits that protect the API from such queries.
			"FRAISE_CORE_MAX_COST": fmt.Sprint(100 * rows), "FRAISE_CORE_MAX_RESULT_BYTES": fmt.Sprint(1 << 30),
			"FRAISE_DATABASE_STATEMENT_TIMEOUT": "5m",
			"FRAISE_GATEWAY_AUTHZ_TIMEOUT":      slowMachineEnv["FRAISE_GATEWAY_AUTHZ_TIMEOUT"],
		},
	})
	ctx := context.Background()
	tok := s.Token(b, demo.TenantAcme, "alice", "analyst")

	// Each way runs one untimed round to warm caches (when warm is set),
	// then rounds exports per iteration, and reports its best round: the
	// machine is shared, and the best round is the one least disturbed by
	// others. rates keeps them for the ratios.
	rates := map[string]float64{}
	measure := func(b *testing.B, warm bool, rounds int, export func() (n, bytes int64)) {
		var bestRate, bestMB float64
		if warm {
			export()
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for r := 0; r < rounds; r++ {
				start := time.Now()
				n, bytes := export()
				sec := time.Since(start).Seconds()
				if n != int64(rows) {
					b.Fatalf("got %d rows, want %d", n, rows)
				}
				if rate := float64(n) / sec; rate > bestRate {
					bestRate, bestMB = rate, float64(bytes)/sec/1e6
				}
			}
		}
		b.ReportMetric(bestRate, "rows/s")
		b.ReportMetric(bestMB, "MB/s")
		b.ReportMetric(0, "ns/op")
		rates[b.Name()] = bestRate
	}
	// The targets, as their own line of the table: Flight at least 30x
	// GraphQL JSON and at least 70% of raw COPY.
	parent := b.Name()
	defer b.Run("ratios", func(b *testing.B) {
		f, g, c := rates[parent+"/flight_doget_gateway"], rates[parent+"/graphql_json_core"], rates[parent+"/copy_binary_pgx"]
		if f == 0 || g == 0 || c == 0 {
			b.Fatalf("a way did not run: flight %v, graphql %v, copy %v rows/s", f, g, c)
		}
		b.ReportMetric(f/g, "flight/graphql-x")
		b.ReportMetric(100*f/c, "flight/copy-%")
		b.ReportMetric(0, "ns/op")
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "MISSED"
		}
		// COPY is the ceiling Flight reads against, so Flight/GraphQL can
		// reach 30x only while GraphQL JSON stays under a thirtieth of it.
		if b.N > 1 {
			return // the framework calls this again with a larger N: report, but log once
		}
		b.Logf("flight %.0f rows/s, graphql %.0f, copy %.0f: %.1fx GraphQL (target 30x: %s; at most %.1fx while GraphQL runs at %.0f%% of COPY), %.0f%% of COPY (target 70%%: %s)",
			f, g, c, f/g, verdict(f/g >= 30), c/g, 100*g/c, 100*f/c, verdict(f/c >= 0.7))
	})

	b.Run("flight_doget_gateway", func(b *testing.B) {
		c := s.FlightClient(b, s.Addrs.Gateway)
		fctx := stack.Bearer(ctx, tok)
		measure(b, true, 3, func() (n, size int64) {
			info, err := c.GetFlightInfo(fctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"bench"}})
			if err != nil {
				b.Fatal(err)
			}
			stream, err := c.DoGet(fctx, info.Endpoint[0].Ticket)
			if err != nil {
				b.Fatal(err)
			}
			rdr, err := flight.NewRecordReader(stream)
			if err != nil {
				b.Fatal(err)
			}
			for rdr.Next() {
				rec := rdr.RecordBatch()
				n += rec.NumRows()
				size += util.TotalRecordSize(rec)
			}
			if err := rdr.Err(); err != nil {
				b.Fatal(err)
			}
			rdr.Release()
			return n, size
		})
	})

	b.Run("copy_binary_pgx", func(b *testing.B) {
		conn, err := pgx.Connect(ctx, strings.Replace(s.AdminURL, "postgres@", "fraise_app@", 1))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		measure(b, true, 3, func() (n, size int64) {
			tx, err := conn.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "select set_config('fraise.tenant', $1, true)", demo.TenantAcme); err != nil {
				b.Fatal(err)
			}
			w := &countingWriter{}
			tag, err := conn.PgConn().CopyTo(ctx, w, "COPY (SELECT "+benchColumns+" FROM public.v_bench) TO STDOUT (FORMAT binary)")
			if err != nil {
				b.Fatal(err)
			}
			_ = tx.Rollback(ctx)
			return tag.RowsAffected(), w.n
		})
	})

	// GraphQL goes straight to the core's HTTP port with an assertion, as
	// the gateway would forward it: the gateway's 30 s route timeout is
	// shorter than a million-row JSON response takes, and skipping the
	// hop only flatters JSON in the comparison.
	b.Run("graphql_json_core", func(b *testing.B) {
		client := &http.Client{Transport: s.AsGateway.Transport, Timeout: 10 * time.Minute}
		body := fmt.Sprintf(`{"query":"{ benchRows(limit: %d) { id i4 i2 f8 num flag label uid day ts } }"}`, rows)
		binding := assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(body))
		// The same warm-up and rounds as the other ways: with fewer, JSON
		// would have fewer chances at an undisturbed round, and the ratios
		// would flatter Flight on a busy machine.
		measure(b, true, 3, func() (n, size int64) {
			req, _ := http.NewRequest(http.MethodPost, "https://"+s.Addrs.CoreHTTP+"/graphql", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(assertion.Header, s.Assertion(b, demo.TenantAcme, "alice", "analyst", binding))
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			head := make([]byte, 24)
			k, _ := io.ReadFull(resp.Body, head)
			// The key alone: PostgreSQL writes json objects as "k" : v.
			// Values are label-<n>, so the quoted key cannot match one.
			objects := &keyCounter{key: []byte(`"label"`)}
			rest, err := io.Copy(objects, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(head[:k]), `{"data":{"benchRows":[{`) {
				b.Fatalf("graphql: status %d, %v, body starts %q", resp.StatusCode, err, head[:k])
			}
			return objects.n, int64(k) + rest
		})
	})
}

// keyCounter counts the occurrences of key in what is written to it, so
// the JSON response's rows are counted without holding it.
type keyCounter struct {
	key  []byte
	tail []byte
	n    int64
}

func (c *keyCounter) Write(p []byte) (int, error) {
	buf := append(c.tail, p...)
	c.n += int64(bytes.Count(buf, c.key))
	// Keep what could start a key split across writes, never a whole one.
	keep := min(len(c.key)-1, len(buf))
	c.tail = append(c.tail[:0], buf[len(buf)-keep:]...)
	return len(p), nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
