package postgres_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// accountsSQL is a ledger whose balances always sum to zero: every write
// moves an amount between two accounts or opens an empty one, so a read
// that is not of one snapshot shows, most likely, another sum.
const accountsSQL = `
CREATE TABLE public.accounts (id int8 PRIMARY KEY, v int8 NOT NULL);
INSERT INTO public.accounts SELECT g, 0 FROM generate_series(1, 20000) g;
CREATE VIEW public.v_accounts WITH (security_invoker = true) AS SELECT id, v FROM public.accounts;
GRANT SELECT ON public.accounts, public.v_accounts TO fraise_app;`

// ledgerWriter moves amounts between random accounts and opens new ones,
// one transaction each, until stop; commits counts them.
func ledgerWriter(ctx context.Context, tb testing.TB, url string, stop <-chan struct{}, commits chan<- struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			done <- err
			return
		}
		defer conn.Close(context.Background())
		next := int64(20001)
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			a, b, d := rand.Int64N(20000)+1, rand.Int64N(20000)+1, rand.Int64N(100)+1
			batch := &pgx.Batch{}
			batch.Queue("update public.accounts set v = v - $2 where id = $1", a, d)
			batch.Queue("update public.accounts set v = v + $2 where id = $1", b, d)
			if i%3 == 0 {
				batch.Queue("insert into public.accounts values ($1, 0)", next)
				next++
			}
			tx, err := conn.Begin(ctx)
			if err == nil {
				err = tx.SendBatch(ctx, batch).Close()
			}
			if err == nil {
				err = tx.Commit(ctx)
			}
			if err != nil {
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

// TestParallelExportIsOneSnapshot: an export split into parts over one
// exported snapshot, its parts read at once on their own connections
// while writes go on, gives exactly the rows of that snapshot, each once,
// as one stream of it would.
func TestParallelExportIsOneSnapshot(t *testing.T) {
	e, f := mustExporterWith(t, postgres.ExportOptions{MaxSnapshots: 8, MaxSnapshotsPerTenant: 4})
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, accountsSQL); err != nil {
		t.Fatal(err)
	}
	cat, err := flight.NewCatalog([]flight.Dataset{{Name: "ledger", View: "public.v_accounts", Endpoints: 4,
		Columns: []flight.Column{{Name: "id", Type: flight.Type{Kind: flight.KindInt8}}, {Name: "v", Type: flight.Type{Kind: flight.KindInt8}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := core.Principal{Subject: "ann", Tenant: demo.TenantAcme}
	d, err := cat.Lookup(p, "ledger")
	if err != nil {
		t.Fatal(err)
	}
	q := flight.Query{Dataset: "ledger"}
	key, ok := flight.SplitKey(d, q, p)
	if !ok {
		t.Fatal("the ledger cannot be split")
	}

	stop, commits := make(chan struct{}), make(chan struct{})
	writer := ledgerWriter(ctx, t, f.pg.AdminURL(f.db), stop, commits)
	defer func() {
		close(stop)
		if err := <-writer; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()
	awaitCommits := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-commits:
			case err := <-writer:
				t.Fatalf("writer stopped: %v", err)
			}
		}
	}
	awaitCommits(20)

	keys, err := flight.Compile(d, flight.Query{Dataset: "ledger", Columns: []string{"id"}}, p)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := e.Snapshot(ctx, p.Tenant, keys, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot's rows, read as one stream of it.
	want := map[int64]int64{}
	tx, err := admin.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "set transaction snapshot '"+snap.ID+"'"); err != nil {
		t.Fatal(err)
	}
	rows, _ := tx.Query(ctx, "select id, v from public.v_accounts")
	for rows.Next() {
		var id, v int64
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		want[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	awaitCommits(50) // the table moves on before the parts begin

	parts := flight.Split(q, key, snap, d.Endpoints)
	if len(parts) != 4 {
		t.Fatalf("got %d parts, want 4", len(parts))
	}
	var mu sync.Mutex
	got := map[int64]int64{}
	var dup []int64
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, pq := range parts {
		st, err := flight.Compile(d, pq, p)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.Export(ctx, p.Tenant, st, flight.BatchLimits{Rows: 1000, Bytes: 1 << 20}, func(rec arrow.RecordBatch) error {
				ids, vs := rec.Column(0).(*array.Int64), rec.Column(1).(*array.Int64)
				mu.Lock()
				defer mu.Unlock()
				for r := range int(rec.NumRows()) {
					if _, ok := got[ids.Value(r)]; ok {
						dup = append(dup, ids.Value(r))
					}
					got[ids.Value(r)] = vs.Value(r)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	if len(dup) > 0 {
		t.Errorf("rows read by two parts: %v", dup[:min(len(dup), 10)])
	}
	var sum int64
	for id, v := range got {
		sum += v
		if w, ok := want[id]; !ok || w != v {
			t.Errorf("row %d: got v=%d, want %d (in the snapshot: %v)", id, v, w, ok)
		}
	}
	if len(got) != len(want) || sum != 0 {
		t.Errorf("got %d rows summing to %d, want the snapshot's %d summing to 0", len(got), sum, len(want))
	}
	var now int
	if err := admin.QueryRow(ctx, "select count(*) from public.accounts").Scan(&now); err != nil || now <= len(want) {
		t.Errorf("the table has %d rows (%v), want more than the snapshot's %d: writes went on", now, err, len(want))
	}

	t.Run("a part read again after every part began finds the snapshot ended", func(t *testing.T) {
		st, _ := flight.Compile(d, parts[0], p)
		err := e.Export(ctx, p.Tenant, st, flight.BatchLimits{Rows: 1000, Bytes: 1 << 20}, discard)
		if core.ErrorCode(err) != core.CodeNotFound {
			t.Errorf("got %v, want NOT_FOUND", err)
		}
	})
}

// TestSnapshotsBoundedPerTenant: a tenant holds at most its share of
// snapshots; Release gives one back.
func TestSnapshotsBoundedPerTenant(t *testing.T) {
	e, _ := mustExporterWith(t, postgres.ExportOptions{MaxSnapshots: 4, MaxSnapshotsPerTenant: 2})
	ctx := context.Background()
	keys := flight.Statement{SQL: "select g::int8 from generate_series(1, 10) g", Columns: []flight.Column{{Name: "g", Type: flight.Type{Kind: flight.KindInt8}}}}
	var ids []string
	for range 2 {
		s, err := e.Snapshot(ctx, demo.TenantAcme, keys, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if s.Min != "1" || s.Max != "10" {
			t.Errorf("got range %s..%s, want 1..10", s.Min, s.Max)
		}
		ids = append(ids, s.ID)
	}
	if _, err := e.Snapshot(ctx, demo.TenantAcme, keys, time.Minute); core.ErrorCode(err) != core.CodeRateLimited {
		t.Errorf("third snapshot: got %v, want RATE_LIMITED", err)
	}
	if _, err := e.Snapshot(ctx, demo.TenantGlobex, keys, time.Minute); err != nil {
		t.Errorf("another tenant's: got %v, want a snapshot", err)
	}
	e.Release(ids[0])
	if _, err := e.Snapshot(ctx, demo.TenantAcme, keys, time.Minute); err != nil {
		t.Errorf("after a release: got %v, want a snapshot", err)
	}
	if slices.Contains(ids, "") {
		t.Errorf("got empty snapshot ids %v", ids)
	}
}
