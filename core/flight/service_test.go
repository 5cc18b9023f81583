package flight_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/await"
)

const svcTenant = "11111111-1111-4111-8111-111111111111"

var ann = core.Principal{Subject: "ann", Tenant: svcTenant, Roles: []string{"analyst"}}

// svcFixture is a Service over an in-memory source, with ids (one
// endpoint) and ledger (split into up to 4).
type svcFixture struct {
	svc *flight.Service
	src *coretest.FlightSource
}

func mustService(tb testing.TB, src *coretest.FlightSource, o flight.ServiceOptions) svcFixture {
	tb.Helper()
	id := flight.Column{Name: "id", Type: flight.Type{Kind: flight.KindInt8}}
	cat, err := flight.NewCatalog([]flight.Dataset{
		{Name: "ids", View: "v_ids", Columns: []flight.Column{id}},
		{Name: "ledger", View: "v_ledger", Endpoints: 4, Columns: []flight.Column{id}},
		{Name: "secret", View: "v_secret", Roles: []string{"admin"}, Columns: []flight.Column{id}},
	}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tickets, err := flight.NewTickets(make([]byte, 32), time.Minute, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	o.Catalog, o.Tickets, o.Source = cat, tickets, src
	if o.Batch.Rows == 0 {
		o.Batch = flight.BatchLimits{Rows: 100, Bytes: 1 << 20}
	}
	return svcFixture{svc: flight.NewService(o), src: src}
}

// ticket plans q for p and returns its one ticket.
func (f svcFixture) ticket(tb testing.TB, p core.Principal, q flight.Query) []byte {
	tb.Helper()
	pl, err := f.svc.Plan(context.Background(), p, q, flight.PlanOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	if len(pl.Tickets) != 1 {
		tb.Fatalf("got %d tickets, want 1", len(pl.Tickets))
	}
	return pl.Tickets[0]
}

// collect is a Writer that keeps the rows' count, and fails once it has
// been written failAfter batches (never when 0).
type collect struct {
	mu        sync.Mutex
	schema    *arrow.Schema
	rows      int64
	batches   int
	failAfter int
	began     int
}

var errGone = core.Errorf(core.CodeUnavailable, "the client went away")

func (c *collect) Begin(s *arrow.Schema) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.schema, c.began = s, c.began+1
	return nil
}

func (c *collect) Write(rec arrow.RecordBatch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failAfter > 0 && c.batches >= c.failAfter {
		return errGone
	}
	c.rows += rec.NumRows()
	c.batches++
	return nil
}

func TestServicePlan(t *testing.T) {
	encodeErr := errors.New("cannot encode")
	tests := []struct {
		name     string
		o        flight.ServiceOptions
		p        core.Principal
		q        flight.Query
		po       flight.PlanOptions
		rows     int64
		tickets  int
		code     core.Code
		ordered  bool
		snapshot int // snapshots left open
	}{
		{name: "a dataset whole", p: ann, q: flight.Query{Dataset: "ids"}, rows: 1000, tickets: 1},
		{name: "ordered", p: ann, q: flight.Query{Dataset: "ids", Order: []flight.Order{{Column: "id"}}}, rows: 1000, tickets: 1, ordered: true},
		{name: "split over a snapshot", o: flight.ServiceOptions{}, p: ann, q: flight.Query{Dataset: "ledger"},
			po: flight.PlanOptions{Parallel: true}, rows: 1000, tickets: 4, snapshot: 1},
		{name: "split at most MaxParts", o: flight.ServiceOptions{MaxParts: 2}, p: ann, q: flight.Query{Dataset: "ledger"},
			po: flight.PlanOptions{Parallel: true}, rows: 1000, tickets: 2, snapshot: 1},
		{name: "not split without Parallel", p: ann, q: flight.Query{Dataset: "ledger"}, rows: 1000, tickets: 1},
		{name: "not split when too few rows", p: ann, q: flight.Query{Dataset: "ledger"},
			po: flight.PlanOptions{Parallel: true}, rows: 0, tickets: 1},
		{name: "not split with a limit", p: ann, q: flight.Query{Dataset: "ledger", Limit: new(int64(5))},
			po: flight.PlanOptions{Parallel: true}, rows: 1000, tickets: 1},
		{name: "a dataset the role may not export", p: ann, q: flight.Query{Dataset: "secret"}, code: core.CodeNotFound},
		{name: "no such dataset", p: ann, q: flight.Query{Dataset: "nope"}, code: core.CodeNotFound},
		{name: "no such column", p: ann, q: flight.Query{Dataset: "ids", Columns: []string{"nope"}}, code: core.CodeInvalid},
		{name: "an encoding failure releases the snapshot", p: ann, q: flight.Query{Dataset: "ledger"},
			po:   flight.PlanOptions{Parallel: true, Encode: func([]byte) ([]byte, error) { return nil, encodeErr }},
			rows: 1000, code: core.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &coretest.FlightSource{Rows: tt.rows}
			o := tt.o
			o.Partitioner = src
			f := mustService(t, src, o)
			pl, err := f.svc.Plan(context.Background(), tt.p, tt.q, tt.po)
			if got := core.ErrorCode(err); got != tt.code {
				t.Fatalf("got %v, want code %q", err, tt.code)
			}
			if src.OpenSnapshots() != tt.snapshot {
				t.Errorf("got %d snapshots open, want %d", src.OpenSnapshots(), tt.snapshot)
			}
			if err != nil {
				return
			}
			if len(pl.Tickets) != tt.tickets || pl.Ordered != tt.ordered || pl.Schema.NumFields() != 1 || pl.Dataset.Name != tt.q.Dataset {
				t.Errorf("got %d tickets, ordered %v, schema %v, dataset %q; want %d, %v, one field, %q",
					len(pl.Tickets), pl.Ordered, pl.Schema, pl.Dataset.Name, tt.tickets, tt.ordered, tt.q.Dataset)
			}
			// Every endpoint redeems, and together they read every row once.
			var w collect
			for _, tk := range pl.Tickets {
				if err := f.svc.Export(context.Background(), tt.p, tk, &w); err != nil {
					t.Fatalf("export: %v", err)
				}
			}
			if w.began != len(pl.Tickets) {
				t.Errorf("got %d Begin calls, want one per ticket", w.began)
			}
			if len(pl.Tickets) > 1 {
				for i, st := range src.Exports() {
					if st.Snapshot == "" || st.Parts != len(pl.Tickets) || st.Part != i {
						t.Errorf("part %d: got snapshot %q, part %d of %d", i, st.Snapshot, st.Part, st.Parts)
					}
				}
			}
		})
	}
}

// TestServiceList lists what a principal may export, each whole.
func TestServiceList(t *testing.T) {
	src := &coretest.FlightSource{Rows: 1000}
	f := mustService(t, src, flight.ServiceOptions{Partitioner: src})
	plans, err := f.svc.List(context.Background(), ann)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pl := range plans {
		names = append(names, pl.Dataset.Name)
		if len(pl.Tickets) != 1 {
			t.Errorf("%s: got %d tickets, want 1 (a listing opens no snapshot)", pl.Dataset.Name, len(pl.Tickets))
		}
	}
	if len(names) != 2 || names[0] != "ids" || names[1] != "ledger" {
		t.Errorf("got %v, want [ids ledger] (not secret)", names)
	}
	if n := len(f.svc.Datasets(ann)); n != 2 {
		t.Errorf("Datasets: got %d, want 2", n)
	}
	if src.OpenSnapshots() != 0 {
		t.Errorf("got %d snapshots open, want none", src.OpenSnapshots())
	}
}

// TestServiceExport redeems tickets: what each outcome returns, how many
// rows it streamed, and whether the source ran.
func TestServiceExport(t *testing.T) {
	other := ann
	other.Tenant = "22222222-2222-4222-8222-222222222222"
	sourceErr := core.Errorf(core.CodeTimeout, "statement timeout")
	tests := []struct {
		name     string
		redeemer core.Principal
		ticket   func(f svcFixture) []byte
		srcErr   error
		adm      core.Admitter
		rows     int64
		code     core.Code
		ran      bool
	}{
		{name: "every row", redeemer: ann, rows: 1000, ran: true},
		{name: "bound to its tenant", redeemer: other, code: core.CodeForbidden},
		{name: "a forged ticket", redeemer: ann, ticket: func(svcFixture) []byte { return []byte("fr1.x.y") }, code: core.CodeUnauthenticated},
		{name: "a prepared handle is no ticket", redeemer: ann, ticket: func(f svcFixture) []byte {
			ps, err := f.svc.Prepare(ann, "SELECT id FROM ids")
			if err != nil {
				t.Fatal(err)
			}
			return ps.Handle
		}, code: core.CodeUnauthenticated},
		{name: "the source's error", redeemer: ann, srcErr: sourceErr, code: core.CodeTimeout, ran: true},
		{name: "refused admission", redeemer: ann, adm: refuseAll{}, code: core.CodeRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &coretest.FlightSource{Rows: 1000, Err: tt.srcErr}
			f := mustService(t, src, flight.ServiceOptions{Admitter: tt.adm})
			tk := f.ticket(t, ann, flight.Query{Dataset: "ids"})
			if tt.ticket != nil {
				tk = tt.ticket(f)
			}
			var w collect
			err := f.svc.Export(context.Background(), tt.redeemer, tk, &w)
			if got := core.ErrorCode(err); got != tt.code {
				t.Fatalf("got %v, want code %q", err, tt.code)
			}
			if w.rows != tt.rows {
				t.Errorf("got %d rows, want %d", w.rows, tt.rows)
			}
			if ran := len(src.Exports()) > 0; ran != tt.ran {
				t.Errorf("source ran: got %v, want %v", ran, tt.ran)
			}
			if src.Unreleased() != 0 {
				t.Errorf("%d bytes of batches unreleased", src.Unreleased())
			}
		})
	}
}

// refuseAll refuses every export as a tenant over its share is.
type refuseAll struct{}

func (refuseAll) Admit(context.Context, string) (func(), error) {
	return nil, core.Errorf(core.CodeRateLimited, "over its share")
}

// TestServiceExportAdmission admits exports through a real admission
// controller: one slot, which a running export holds and its end gives
// back; a refusal carries the controller's retry hint.
func TestServiceExportAdmission(t *testing.T) {
	src := &coretest.FlightSource{Rows: -1}
	ctrl := admission.New(admission.Options{MaxPerTenant: 1, RetryAfter: 7 * time.Second})
	f := mustService(t, src, flight.ServiceOptions{Admitter: ctrl})
	tk := f.ticket(t, ann, flight.Query{Dataset: "ids"})

	// The first export holds the tenant's one slot until its client fails.
	w := &blockingWriter{written: make(chan struct{}), release: make(chan struct{})}
	first := make(chan error, 1)
	go func() { first <- f.svc.Export(context.Background(), ann, tk, w) }()
	<-w.written
	err := f.svc.Export(context.Background(), ann, tk, &collect{})
	if d, ok := core.RetryAfter(err); core.ErrorCode(err) != core.CodeRateLimited || !ok || d != 7*time.Second {
		t.Errorf("second export: got %v (retry after %v, %v), want RATE_LIMITED retrying after 7s", err, d, ok)
	}
	if n := len(src.Exports()); n != 1 {
		t.Errorf("got %d exports run, want only the admitted one", n)
	}
	close(w.release)
	if err := <-first; !errors.Is(err, errGone) {
		t.Errorf("first export: got %v, want its writer's error", err)
	}
	// Its end gave the slot back: the next export runs (until its writer
	// fails, the source being endless).
	if err := f.svc.Export(context.Background(), ann, tk, &collect{failAfter: 1}); !errors.Is(err, errGone) {
		t.Errorf("export after the first ended: got %v, want it run", err)
	}
}

// blockingWriter accepts one batch, then blocks until release and fails.
type blockingWriter struct {
	once             sync.Once
	written, release chan struct{}
}

func (*blockingWriter) Begin(*arrow.Schema) error { return nil }

func (b *blockingWriter) Write(arrow.RecordBatch) error {
	first := false
	b.once.Do(func() { first = true; close(b.written) })
	if first {
		return nil
	}
	<-b.release
	return errGone
}

// TestServiceExportStops cuts an endless export off, by its writer failing
// or its context ending: the source must stop, every batch must be
// released and no goroutine remain.
func TestServiceExportStops(t *testing.T) {
	tests := []struct {
		name   string
		cancel bool
	}{
		{name: "the writer fails"},
		{name: "the context ends", cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &coretest.FlightSource{Rows: -1}
			f := mustService(t, src, flight.ServiceOptions{})
			tk := f.ticket(t, ann, flight.Query{Dataset: "ids"})
			base := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &collect{failAfter: 3}
			if tt.cancel {
				w.failAfter = 0
				go func() {
					await.Within(10*time.Second, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.batches >= 3 })
					cancel()
				}()
			}
			err := f.svc.Export(ctx, ann, tk, w)
			if core.ErrorCode(err) != core.CodeUnavailable {
				t.Errorf("got %v, want UNAVAILABLE", err)
			}
			if ended := src.AwaitEnd(1, 10*time.Second); len(ended) != 1 || ended[0] == nil {
				t.Fatalf("source ended with %v, want an error", ended)
			}
			if !await.Within(10*time.Second, func() bool { return runtime.NumGoroutine() <= base && src.Unreleased() == 0 }) {
				t.Fatalf("%d goroutines (baseline %d), %d bytes of batches unreleased", runtime.NumGoroutine(), base, src.Unreleased())
			}
			if w.rows < 300 {
				t.Errorf("got %d rows written, want at least the 3 batches", w.rows)
			}
		})
	}
}

// TestServiceStatements runs Flight SQL's statements: names with or
// without the catalog's prefixes, datasets that are not exportable, and
// prepared statements bound to parameters.
func TestServiceStatements(t *testing.T) {
	src := &coretest.FlightSource{Rows: 10}
	f := mustService(t, src, flight.ServiceOptions{})
	tests := []struct {
		sql     string
		dataset string
		code    core.Code
	}{
		{sql: "SELECT id FROM ids", dataset: "ids"},
		{sql: "SELECT id FROM public.ids", dataset: "ids"},
		{sql: "SELECT id FROM fraise.public.ids", dataset: "ids"},
		{sql: "SELECT id FROM secret", code: core.CodeInvalid},
		{sql: "SELECT id FROM nope", code: core.CodeInvalid},
		{sql: "DELETE FROM ids", code: core.CodeForbidden},
		{sql: "SELECT id FROM ids WHERE id = ?", dataset: "ids"},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			q, schema, err := f.svc.Statement(ann, tt.sql)
			if got := core.ErrorCode(err); got != tt.code {
				t.Fatalf("got %v, want code %q", err, tt.code)
			}
			if err == nil && (q.Dataset != tt.dataset || schema.NumFields() != 1) {
				t.Errorf("got dataset %q, schema %v; want %q with one field", q.Dataset, schema, tt.dataset)
			}
		})
	}

	t.Run("prepared", func(t *testing.T) {
		ps, err := f.svc.Prepare(ann, "SELECT id FROM ids WHERE id = ?")
		if err != nil {
			t.Fatal(err)
		}
		if ps.Params.NumFields() != 1 || ps.Params.Field(0).Type.ID() != arrow.INT64 {
			t.Errorf("got parameter schema %v, want one int64", ps.Params)
		}
		if _, err := f.svc.Bind(ann, ps.Handle, []string{"1", "2"}); core.ErrorCode(err) != core.CodeInvalid {
			t.Errorf("two values for one parameter: got %v, want INVALID", err)
		}
		h, err := f.svc.Bind(ann, ps.Handle, []string{"7"})
		if err != nil {
			t.Fatal(err)
		}
		q, schema, err := f.svc.Prepared(ann, h)
		if err != nil || q.Params != 0 || schema.NumFields() != 1 {
			t.Fatalf("bound statement: got %+v, %v, %v", q, schema, err)
		}
		other := ann
		other.Subject = "bob"
		if _, _, err := f.svc.Prepared(other, h); core.ErrorCode(err) != core.CodeForbidden {
			t.Errorf("another subject's handle: got %v, want FORBIDDEN", err)
		}
		unbound, err := f.svc.Prepare(ann, "SELECT id FROM ids")
		if err != nil {
			t.Fatal(err)
		}
		if h, err := f.svc.Bind(ann, unbound.Handle, nil); err != nil || string(h) != string(unbound.Handle) {
			t.Errorf("binding no row to a statement without parameters: got %v, want its own handle", err)
		}
	})
}
