package e2e_test

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/stack"
)

// streamRows is the size of the streamed result: with a 100-byte label,
// about 350 MB of values, more than twice the heap bound below.
const streamRows = 3_000_000

// streamHeapBound is how far the process's heap (core, gateway, extauthz
// and the client: the whole stack runs in this test binary) may grow above
// its baseline while the export streams, garbage included: with GOGC=100
// the heap may reach twice the live heap before a collection.
const streamHeapBound = 2 * streamLiveBound

// streamLiveBound bounds the live heap (reachable after a GC) over its
// baseline: the batches held by the core (three), the gateway's HTTP/2
// buffers and the client's 16 MiB receive windows.
const streamLiveBound = 96 << 20

const seriesSQL = `
CREATE VIEW public.v_series AS
    SELECT g::int8 AS n, g * 1.5::float8 AS x, repeat('x', 100) || g AS label FROM generate_series(1, 3000000) g;
GRANT SELECT ON public.v_series TO fraise_app;
`

const seriesTOML = `
[[flight.datasets]]
name = "series"
view = "public.v_series"
columns = [{ name = "n", type = "int8" }, { name = "x", type = "float8" }, { name = "label", type = "text" }]
`

// heapSampler records, until stopped, the peak of the heap allocated
// (HeapAlloc, garbage included) and of the live heap (what the last GC
// found reachable: the memory the stack actually holds).
type heapSampler struct {
	stop     chan struct{}
	done     chan struct{}
	peak     uint64
	peakLive uint64
}

func sampleHeap(every time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		var ms runtime.MemStats
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapAlloc)
			metrics.Read(live)
			h.peakLive = max(h.peakLive, live[0].Value.Uint64())
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	return h.peak
}

// activeExports counts the statements still running on the view.
func activeExports(tb testing.TB, adminURL string) int {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `select count(*) from pg_stat_activity
		where usename = 'fraise_app' and state <> 'idle' and query like '%v_series%'`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestFlightStreamsMillionsOfRows(t *testing.T) {
	// Not parallel: it measures the process's heap and goroutines, which
	// the other tests' stacks in this process would move. Go runs the
	// package's parallel tests after it, so it runs alone.
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	s := stack.StartWith(t, stack.Options{TOML: seriesTOML, SetupSQL: seriesSQL, PerTenant: 10000, Env: slowMachineEnv})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := s.FlightClient(t, s.Addrs.Gateway)
	acme := stack.Bearer(ctx, s.Token(t, demo.TenantAcme, "alice", "analyst"))
	desc := func(limit int) *flight.FlightDescriptor {
		cmd := `{"dataset":"series"}`
		if limit > 0 {
			cmd = `{"dataset":"series","limit":` + itoa(limit) + `}`
		}
		return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(cmd)}
	}
	// count streams a ticket, counting rows and releasing every batch.
	count := func(ctx context.Context, d *flight.FlightDescriptor, stopAfter int) (int64, error) {
		info, err := c.GetFlightInfo(ctx, d)
		if err != nil {
			return 0, err
		}
		stream, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
		if err != nil {
			return 0, err
		}
		rdr, err := flight.NewRecordReader(stream)
		if err != nil {
			return 0, err
		}
		defer rdr.Release()
		var n int64
		batches := 0
		for rdr.Next() {
			n += rdr.RecordBatch().NumRows()
			batches++
			if stopAfter > 0 && batches == stopAfter {
				return n, nil
			}
		}
		return n, rdr.Err()
	}

	// Warm up: connections and pools exist before the baselines.
	if n, err := count(acme, desc(1000), 0); err != nil || n != 1000 {
		t.Fatalf("warm-up: got %d rows, %v", n, err)
	}

	t.Run("heap stays bounded", func(t *testing.T) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		h := sampleHeap(5 * time.Millisecond)
		start := time.Now()
		n, err := count(acme, desc(0), 0)
		peak := h.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if n != streamRows {
			t.Fatalf("got %d rows, want %d", n, streamRows)
		}
		el := time.Since(start)
		t.Logf("streamed %d rows in %v (%.0f rows/s); heap baseline %d MiB, peak %d MiB (+%d MiB, bound +%d MiB), peak live heap %d MiB",
			n, el.Round(time.Millisecond), float64(n)/el.Seconds(), base>>20, peak>>20, (peak-base)>>20, streamHeapBound>>20, h.peakLive>>20)
		if peak > base+streamHeapBound {
			t.Errorf("heap grew by %d MiB, bound %d MiB", (peak-base)>>20, streamHeapBound>>20)
		}
		if h.peakLive > base+streamLiveBound {
			t.Errorf("live heap reached %d MiB, bound %d MiB over the baseline", h.peakLive>>20, streamLiveBound>>20)
		}
	})

	t.Run("client disconnect leaves no goroutine or query", func(t *testing.T) {
		runtime.GC()
		baseG := runtime.NumGoroutine()
		cctx, ccancel := context.WithCancel(acme)
		var wg sync.WaitGroup
		read := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := count(cctx, desc(0), 3)
			read <- err
		}()
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		if n := activeExports(t, s.AdminURL); n != 1 {
			t.Errorf("mid-stream: %d queries on the view, want 1", n)
		}
		ccancel() // the client goes away mid-stream
		wg.Wait()
		var g, q int
		if !await.WithinEvery(15*time.Second, 50*time.Millisecond, func() bool {
			g, q = runtime.NumGoroutine(), activeExports(t, s.AdminURL)
			return g <= baseG && q == 0
		}) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after 15s: %d goroutines (baseline %d), %d queries running\n%s", g, baseG, q, buf[:runtime.Stack(buf, true)])
		}
		t.Logf("back to %d goroutines (baseline %d), no query running", g, baseG)
	})
}

func itoa(n int) string {
	b := []byte{}
	for n >= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(append([]byte{byte('0' + n)}, b...))
}
