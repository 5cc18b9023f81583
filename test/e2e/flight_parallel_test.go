package e2e_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// ledgerRows is the size of the ledger: enough rows that the parts of an
// export are read while transfers commit.
const ledgerRows = 50000

// ledgerSQL is a ledger per tenant whose balances sum to zero in every
// snapshot: each write moves an amount between two Acme accounts.
const ledgerSQL = `
CREATE TABLE public.ledger (tenant_id uuid NOT NULL, id int8 PRIMARY KEY, v int8 NOT NULL);
ALTER TABLE public.ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ledger FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.ledger
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);
INSERT INTO public.ledger SELECT '11111111-1111-4111-8111-111111111111', g, 0 FROM generate_series(1, 50000) g;
INSERT INTO public.ledger VALUES ('22222222-2222-4222-8222-222222222222', 50001, 7);
CREATE VIEW public.v_ledger WITH (security_invoker = true) AS SELECT id, v FROM public.ledger;
GRANT SELECT ON public.ledger, public.v_ledger TO fraise_app;`

// ledgerTOML declares the ledger with four endpoints; the tenant's bound
// (admission.flight.max_concurrent_per_tenant, 2 by default) makes them two.
const ledgerTOML = `
[[flight.datasets]]
name = "ledger"
view = "public.v_ledger"
endpoints = 4
columns = [{ name = "id", type = "int8" }, { name = "v", type = "int8" }]
`

// transfers moves amounts between random Acme accounts until stop, one
// transaction each, and reports each commit on commits (when someone
// listens).
func transfers(t *testing.T, url string, stop <-chan struct{}, commits chan<- struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			done <- err
			return
		}
		defer conn.Close(ctx)
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			a, b, d := rand.Int64N(ledgerRows)+1, rand.Int64N(ledgerRows)+1, rand.Int64N(100)+1
			tx, err := conn.Begin(ctx)
			if err != nil {
				done <- err
				return
			}
			batch := &pgx.Batch{}
			batch.Queue("update public.ledger set v = v - $2 where id = $1", a, d)
			batch.Queue("update public.ledger set v = v + $2 where id = $1", b, d)
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				done <- err
				return
			}
			if err := tx.Commit(ctx); err != nil {
				done <- err
				return
			}
			select {
			case commits <- struct{}{}:
			default:
			}
		}
	}()
	return done
}

// ledgerState reads endpoints, in parallel, into id → balance, failing on
// a row read twice.
func ledgerState(ctx context.Context, t *testing.T, c flight.Client, eps []*flight.FlightEndpoint) map[int64]int64 {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	got := map[int64]int64{}
	errs := make([]error, len(eps))
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := c.DoGet(ctx, ep.Ticket)
			if err != nil {
				errs[i] = err
				return
			}
			rdr, err := flight.NewRecordReader(stream)
			if err != nil {
				errs[i] = err
				return
			}
			defer rdr.Release()
			for rdr.Next() {
				rec := rdr.RecordBatch()
				ids, vs := rec.Column(0).(*array.Int64), rec.Column(1).(*array.Int64)
				mu.Lock()
				for r := range int(rec.NumRows()) {
					if _, dup := got[ids.Value(r)]; dup {
						t.Errorf("row %d read twice", ids.Value(r))
					}
					got[ids.Value(r)] = vs.Value(r)
				}
				mu.Unlock()
			}
			errs[i] = rdr.Err()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("endpoint %d: %v", i, err)
		}
	}
	return got
}

func checkLedger(t *testing.T, what string, got map[int64]int64) {
	t.Helper()
	var sum int64
	for id, v := range got {
		if id < 1 || id > ledgerRows {
			t.Errorf("%s: row %d is not Acme's", what, id)
		}
		sum += v
	}
	if len(got) != ledgerRows || sum != 0 {
		t.Errorf("%s: got %d rows summing to %d, want %d summing to 0 (one snapshot)", what, len(got), sum, ledgerRows)
	}
}

// TestFlightParallelExport: GetFlightInfo answers a dataset declared with
// endpoints with disjoint ranges read in one snapshot; a client reading
// them in parallel gets what one stream gives, while transfers commit
// (Go's client and pyarrow's), and each endpoint's ticket is bound to its
// caller and its range.
func TestFlightParallelExport(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	s := stack.StartWith(t, stack.Options{TOML: ledgerTOML, SetupSQL: ledgerSQL, PerTenant: 10000, Env: slowMachineEnv})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := s.FlightClient(t, s.Addrs.Gateway)
	acme := stack.Bearer(ctx, s.Token(t, demo.TenantAcme, "alice", "analyst"))
	desc := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"ledger"}}
	// A limit keeps an export one stream.
	single := &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(`{"dataset":"ledger","limit":1000000000}`)}

	stop, commits := make(chan struct{}), make(chan struct{})
	writer := transfers(t, s.AdminURL, stop, commits)
	stopped := false
	stopWrites := func() {
		if !stopped {
			stopped = true
			close(stop)
			if err := <-writer; err != nil {
				t.Errorf("transfers: %v", err)
			}
		}
	}
	defer stopWrites()
	for range 20 {
		select {
		case <-commits:
		case err := <-writer:
			t.Fatalf("transfers stopped: %v", err)
		}
	}

	t.Run("endpoints read in parallel under writes are one snapshot", func(t *testing.T) {
		for round := range 3 {
			info, err := c.GetFlightInfo(acme, desc)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Endpoint) != 2 {
				t.Fatalf("got %d endpoints, want 2 (4 declared, 2 the tenant's bound)", len(info.Endpoint))
			}
			checkLedger(t, "round "+string(rune('1'+round)), ledgerState(acme, t, c, info.Endpoint))
		}
	})
	t.Run("pyarrow reads the endpoints in parallel under writes", func(t *testing.T) {
		env := pythonEnv(t, s)
		env["LEDGER_ROWS"] = jsonInt(ledgerRows)
		var sum pythonSummary
		runPythonEnv(t, "flight_parallel.py", env, &sum, 5)
	})

	stopWrites()
	t.Run("with writes stopped, the union of the endpoints is the single stream", func(t *testing.T) {
		info, err := c.GetFlightInfo(acme, desc)
		if err != nil {
			t.Fatal(err)
		}
		parallel := ledgerState(acme, t, c, info.Endpoint)
		one, err := c.GetFlightInfo(acme, single)
		if err != nil {
			t.Fatal(err)
		}
		if len(one.Endpoint) != 1 {
			t.Fatalf("with a limit: got %d endpoints, want 1", len(one.Endpoint))
		}
		stream := ledgerState(acme, t, c, one.Endpoint)
		checkLedger(t, "single stream", stream)
		if len(parallel) != len(stream) {
			t.Fatalf("got %d rows in parallel, want the stream's %d", len(parallel), len(stream))
		}
		for id, v := range stream {
			if parallel[id] != v {
				t.Errorf("row %d: got %d in parallel, want the stream's %d", id, parallel[id], v)
			}
		}
		env := pythonEnv(t, s)
		env["LEDGER_ROWS"] = jsonInt(ledgerRows)
		env["LEDGER_QUIET"] = "1"
		var sum pythonSummary
		runPythonEnv(t, "flight_parallel.py", env, &sum, 5)
	})

	t.Run("an endpoint's ticket is its caller's", func(t *testing.T) {
		info, err := c.GetFlightInfo(acme, desc)
		if err != nil {
			t.Fatal(err)
		}
		globex := stack.Bearer(ctx, s.Token(t, demo.TenantGlobex, "carol", "analyst"))
		stream, err := c.DoGet(globex, info.Endpoint[1].Ticket)
		if err == nil {
			_, err = stream.Recv()
		}
		if got := codeOf(err); got.String() != "PermissionDenied" {
			t.Errorf("another tenant: got %v (%v), want PermissionDenied", got, err)
		}
		// Globex's own export of the ledger is its one row, unsplit.
		g, err := c.GetFlightInfo(globex, desc)
		if err != nil {
			t.Fatal(err)
		}
		if got := ledgerState(globex, t, c, g.Endpoint); len(g.Endpoint) != 1 || len(got) != 1 || got[50001] != 7 {
			t.Errorf("Globex: got %d endpoints and rows %v, want one endpoint with row 50001", len(g.Endpoint), got)
		}
		// Acme's unread endpoints hold a snapshot each until read or expired.
		_ = ledgerState(acme, t, c, info.Endpoint)
	})
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
