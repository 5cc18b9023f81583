package bench_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/loadgen"
	"github.com/fraise-dev/fraise/test/stack"
)

// The overloaded core's configuration. The read is CPU-bound (the core,
// PostgreSQL and this load generator share the machine's two cores) and
// takes about 0.9 ms unloaded: one running at a time keeps a core busy
// (the core's work and PostgreSQL's alternate), and a second running
// request shares the CPU with it and with the refusals and the generator,
// which makes every admitted request slower (p99 2.4x the unloaded p99
// with two, 1.4x with one, as the server times itself). Admission runs
// one, queues one for a burst (up to 100 ms) and, once the core has been
// full for that long, refuses at once whatever finds no free slot (the
// default admission.congested_wait of 0). See docs/ratelimit.md, "Tuning
// for overload".
const (
	overloadRampMax   = 64        // the ramp's top concurrency
	overloadInFlight  = 1024      // the open loop's bound on requests in flight
	overloadMemLimit  = 256 << 20 // GOMEMLIMIT of the server, and so admission's memory budget
	overloadAdmission = `
[admission]
max_concurrent = 1
max_concurrent_per_tenant = 1
max_queue = 1
max_queue_per_tenant = 1
queue_timeout = "100ms"
memory_threshold = 0.8
retry_after = "1s"
`
)

// overloadShape is the run's shape: how long each closed-loop step of the
// ramp, the unloaded measurement and the open-loop overload last.
func overloadShape() (step, unloaded, overload time.Duration) {
	if os.Getenv("CI") != "" {
		return time.Second, 2 * time.Second, 3 * time.Second
	}
	return 2 * time.Second, 5 * time.Second, 10 * time.Second
}

// BenchmarkCoreOverload drives `fraise serve` (its own process, with
// admission control configured as above and GOMEMLIMIT set) with the
// bench's nested read, carrying a signed identity assertion:
//
//  1. closed loop at concurrency 1, for the unloaded p99;
//  2. closed loop at concurrency 2, 4, ... 64 on an unlimited twin of the
//     server, for the saturation throughput (the best of the ramp);
//  3. open loop at twice that rate, arrivals on schedule whatever the
//     answers;
//  4. closed loop at concurrency 1 again, to show the core recovered.
//
// It reports the admitted requests' p50 and p99 under overload and their
// p99 over the unloaded one (target: at most 2), the share refused with
// 429 or 503 (each must carry Retry-After), and the server's peak RSS and
// heap against its memory limit (target: under it). Requests are timed
// from their sending to their answer's arrival on the generator's socket
// (the kernel's receive timestamp, loadgen.WithArrival): this process shares
// the two cores with the server, and what its goroutines then wait for a
// CPU is its own delay, not the server's. The p99s as the generator read
// the answers and as the server timed itself are reported beside.
func BenchmarkCoreOverload(b *testing.B) {
	o := mustOverloadCore(b)
	// This process is the load generator: a client on another machine in
	// production, here one sharing the cores with the core. Collecting its
	// garbage less often leaves them more of the CPU (a fifth of its own
	// went to collection at the default).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	step, unloadedFor, overloadFor := overloadShape()
	// Assertions are signed as the requests go (none ahead): the
	// generator's CPU per request is reported.
	rt := o.target(b, "read", "core")
	t := rt.Target
	mustAnswer(b, t, rt.verify)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

	b.ResetTimer()
	// 1. Unloaded: one request at a time, after a warm-up whose server
	// timings are dropped.
	if _, err := loadgen.Run(context.Background(), loadgen.Load{Duration: time.Second, Concurrency: 1}, t); err != nil {
		b.Fatal(err)
	}
	o.timings.take()
	calmCPU0, _ := procCPU(o.corePID)
	calm, err := loadgen.Run(context.Background(), loadgen.Load{Duration: unloadedFor, Concurrency: 1}, t)
	if err != nil {
		b.Fatal(err)
	}
	calmCPU1, _ := procCPU(o.corePID)
	calmServer := o.timings.take()
	if calm.Failures > 0 || calm.Requests == 0 {
		b.Fatalf("unloaded run: %d failures (first: %v), %d answers", calm.Failures, calm.FirstErr, calm.Requests)
	}

	// 2. Saturation: the best closed-loop throughput of the ramp, on the
	// same core without admission control (which would bound it). The
	// ramp stops after two steps in a row that do not grow by 10%: on a
	// shared machine one step can be unlucky.
	satRPS, satConc, flat := calm.RPS(), 1, 0
	unlimited := o.unlimited.target(b, "read", "core").Target
	for c := 2; c <= overloadRampMax && flat < 2; c *= 2 {
		r, err := loadgen.Run(context.Background(), loadgen.Load{Duration: step, Warmup: step / 4, Concurrency: c}, unlimited)
		if err != nil {
			b.Fatal(err)
		}
		if r.Failures > 0 {
			b.Fatalf("ramp at concurrency %d: %d failures (first: %v)", c, r.Failures, r.FirstErr)
		}
		b.Logf("ramp: concurrency %d, %.0f req/s, p50 %s, p99 %s", c, r.RPS(), r.P50, r.P99)
		if r.RPS() >= 1.1*satRPS {
			flat = 0
		} else {
			flat++
		}
		if r.RPS() > satRPS {
			satRPS, satConc = r.RPS(), c
		}
	}

	// 3. Overload: twice the saturation throughput, open loop.
	o.timings.take()
	mem := startMemWatch(o.corePID, o.adminURL)
	cpu0, _ := procCPU(o.corePID)
	gen0, _ := procCPU(os.Getpid())
	over, err := loadgen.Open(context.Background(), loadgen.Arrivals{Rate: 2 * satRPS, Duration: overloadFor, MaxInFlight: overloadInFlight}, t)
	cpu1, _ := procCPU(o.corePID)
	gen1, _ := procCPU(os.Getpid())
	peakRSS, peakHeap := mem.stop()
	overServer := o.timings.take()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	decisions := scrapeAdmission(o.adminURL)
	// What admission's queue added: the share of waits within 5 ms (the
	// standing queue's bound) and within 10 ms.
	waits := scrapeMetric(o.adminURL, "fraise_admission_wait_seconds_count")
	within5 := scrapeMetric(o.adminURL, `fraise_admission_wait_seconds_bucket{le="0.005"}`)
	within10 := scrapeMetric(o.adminURL, `fraise_admission_wait_seconds_bucket{le="0.01"}`)
	// The limit the memory is held to must be the one the server runs
	// under (and admission's budget, which defaults to it).
	limit := scrapeMetric(o.adminURL, "go_gc_gomemlimit_bytes")

	// 4. After: one request at a time again. Overload must leave nothing
	// behind (no backlog, no leaked slots): the latency comes back.
	after, err := loadgen.Run(context.Background(), loadgen.Load{Duration: unloadedFor, Warmup: time.Second, Concurrency: 1}, t)
	if err != nil {
		b.Fatal(err)
	}

	ratio, readRatio, serverRatio := 0.0, 0.0, 0.0
	if calm.P99 > 0 {
		ratio = float64(over.P99) / float64(calm.P99)
	}
	if calm.ReadP99 > 0 {
		readRatio = float64(over.ReadP99) / float64(calm.ReadP99)
	}
	calmServerP99, overServerP99 := loadgen.Percentile(calmServer, 99), loadgen.Percentile(overServer, 99)
	if calmServerP99 > 0 {
		serverRatio = float64(overServerP99) / float64(calmServerP99)
	}
	b.ReportMetric(ms(calm.P50), "unloaded-p50-ms")
	b.ReportMetric(ms(calm.P99), "unloaded-p99-ms")
	b.ReportMetric(satRPS, "saturation-req/s")
	b.ReportMetric(float64(satConc), "saturation-conc")
	b.ReportMetric(over.OfferedRPS(), "offered-req/s")
	b.ReportMetric(over.AdmittedRPS(), "admitted-req/s")
	b.ReportMetric(ms(over.P50), "admitted-p50-ms")
	b.ReportMetric(ms(over.P99), "admitted-p99-ms")
	b.ReportMetric(ratio, "p99-ratio")
	b.ReportMetric(ms(calm.ReadP99), "unloaded-read-p99-ms")
	b.ReportMetric(ms(over.ReadP99), "admitted-read-p99-ms")
	b.ReportMetric(ms(calmServerP99), "server-unloaded-p99-ms")
	b.ReportMetric(ms(overServerP99), "server-admitted-p99-ms")
	b.ReportMetric(serverRatio, "server-p99-ratio")
	b.ReportMetric(100*over.RefusedShare(), "refused-%")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(overloadMemLimit)/(1<<20), "mem-limit-MB")
	b.ReportMetric(ms(after.P99), "after-p99-ms")
	b.ReportMetric(ms(over.Late), "gen-late-p99-ms")
	b.ReportMetric(float64(over.Dropped), "gen-unsent")
	// CPU per request, of the server (unloaded: per admitted read; under
	// overload: per answer, admitted or refused) and of this process, the
	// load generator, which shares the machine.
	perReq := func(d time.Duration, n int) float64 {
		if n <= 0 {
			return 0
		}
		return float64(d.Microseconds()) / float64(n)
	}
	calmCPU := perReq(calmCPU1-calmCPU0, int(calm.RPS()*(calm.Elapsed+time.Second).Seconds()))
	overCPU := perReq(cpu1-cpu0, over.Admitted+over.Refused)
	genCPU := perReq(gen1-gen0, over.Offered-over.Dropped)
	b.ReportMetric(calmCPU, "unloaded-server-cpu-us/req")
	b.ReportMetric(overCPU, "overload-server-cpu-us/req")
	b.ReportMetric(genCPU, "generator-cpu-us/req")
	b.Logf("unloaded: %.0f req/s, p50 %s, p99 %s; saturation %.0f req/s at concurrency %d; "+
		"at %.0f req/s offered: %d admitted (%.0f/s), p50 %s, p99 %s (%.2f the unloaded p99: target %s), "+
		"%d refused (%.1f%%, %d without Retry-After), %d failed, %d not sent by the generator (p99 lateness %s); "+
		"peak RSS %.1f MB, peak heap %.1f MB, limit %d MB (target %s); server's admission decisions: %s; "+
		"server CPU per request %.0f µs unloaded, %.0f µs per answer under overload; generator CPU %.0f µs per request; "+
		"afterwards, one at a time: %.0f req/s, p50 %s, p99 %s, %d failures; "+
		"as the generator read them (its own waits for a CPU included): unloaded p99 %s, admitted p99 under overload %s (%.2f); "+
		"as the server times itself (Server-Timing, admission wait included): unloaded p99 %s, admitted p99 under overload %s (%.2f); "+
		"of %d queue waits, %d within 5 ms and %d within 10 ms",
		calm.RPS(), calm.P50, calm.P99, satRPS, satConc,
		over.OfferedRPS(), over.Admitted, over.AdmittedRPS(), over.P50, over.P99, ratio, met(ratio > 0 && ratio <= 2),
		over.Refused, 100*over.RefusedShare(), over.RefusedNoRetryAfter, over.Failures, over.Dropped, over.Late,
		float64(peakRSS)/(1<<20), float64(peakHeap)/(1<<20), overloadMemLimit>>20, met(peakRSS > 0 && peakRSS < overloadMemLimit),
		decisions, calmCPU, overCPU, genCPU, after.RPS(), after.P50, after.P99, after.Failures,
		calm.ReadP99, over.ReadP99, readRatio, calmServerP99, overServerP99, serverRatio, waits, within5, within10)

	switch {
	case over.Admitted == 0:
		b.Errorf("no request admitted at twice saturation")
	case ratio > 2:
		b.Errorf("target MISSED: admitted p99 at twice saturation %s is %.2f times the unloaded p99 %s, want at most 2", over.P99, ratio, calm.P99)
	}
	if over.Refused == 0 {
		b.Errorf("nothing refused at twice saturation (%.0f req/s offered, %.0f admitted): the load did not overload the core",
			over.OfferedRPS(), over.AdmittedRPS())
	}
	if over.RefusedNoRetryAfter > 0 {
		b.Errorf("%d of %d refusals had no Retry-After header", over.RefusedNoRetryAfter, over.Refused)
	}
	if over.Failures > 0 {
		b.Errorf("%d requests failed (neither admitted nor refused with 429/503); the first: %v", over.Failures, over.FirstErr)
	}
	// A stall of the shared machine can briefly hold every slot of the
	// generator: up to 1% of arrivals unsent still offers twice saturation
	// within the ramp's own noise.
	if over.Dropped*100 > over.Offered {
		b.Errorf("the generator could not send %d of %d arrivals (too many in flight): the offered rate is short", over.Dropped, over.Offered)
	}
	if limit != overloadMemLimit {
		b.Errorf("the server's GOMEMLIMIT is %d bytes, want %d: the memory target would be measured against the wrong limit", limit, overloadMemLimit)
	}
	if after.Failures > 0 || after.Requests == 0 {
		b.Errorf("after the overload, one at a time: %d failures (first: %v), %d answers; want the core serving again", after.Failures, after.FirstErr, after.Requests)
	}
	switch {
	case peakRSS == 0:
		b.Errorf("could not read the server's RSS from /proc/%d/status", o.corePID)
	case peakRSS >= overloadMemLimit:
		b.Errorf("target MISSED: the server's peak RSS %.1f MB is not under its %d MB memory limit", float64(peakRSS)/(1<<20), overloadMemLimit>>20)
	}
}

// overloadEnv is the core alone, served by the fraise binary twice on the
// same database: with the admission control under test, and unlimited.
type overloadEnv struct {
	*env
	adminURL  string
	unlimited *env
	timings   *serverTimings
}

// serverTimings is the client's transport, recording the time the core
// says it spent on each admitted request (its Server-Timing header): the
// core's own latency, without what the network and a load generator
// starved of CPU on the same machine add.
type serverTimings struct {
	http.RoundTripper
	mu   sync.Mutex
	durs []time.Duration
}

// RoundTrip sends r and records the answer's Server-Timing core duration.
func (s *serverTimings) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.RoundTripper.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	if v, ok := strings.CutPrefix(resp.Header.Get("Server-Timing"), "core;dur="); ok {
		if ms, err := strconv.ParseFloat(v, 64); err == nil {
			s.mu.Lock()
			s.durs = append(s.durs, time.Duration(ms*float64(time.Millisecond)))
			s.mu.Unlock()
		}
	}
	return resp, nil
}

// take returns the durations recorded since the last take, sorted.
func (s *serverTimings) take() []time.Duration {
	s.mu.Lock()
	d := s.durs
	s.durs = nil
	s.mu.Unlock()
	slices.Sort(d)
	return d
}

// mustOverloadCore starts the bench schema and data on the harness's
// PostgreSQL and `fraise serve` on it, as its own process with GOMEMLIMIT
// and the admission control of overloadAdmission.
func mustOverloadCore(tb testing.TB) *overloadEnv {
	tb.Helper()
	harness.SkipShort(tb)
	pg, db := harness.NewDatabase(tb)
	dir := tb.TempDir()
	mustRun(tb, "certs", "--dir", dir)
	certs := devcerts.FilesIn(filepath.Join(dir, "certs"))
	keys := filepath.Join(dir, "keys")
	sdlPath := mustWrite(tb, filepath.Join(dir, "schema.graphql"), schemaSDL)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	admin := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	unlimitedAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	base := fmt.Sprintf(`
[log]
level = "error"
%s[database]
url = %q
admin_url = %q
max_conns = 20
`, stack.TLSTOML(certs), pg.URL("fraise_app", db), pg.AdminURL(db))
	coreSection := func(addr, admin string) string {
		return fmt.Sprintf("[server]\nhttp_addr = %q\nadmin_addr = %q\ntls = false\nschema = %q\nassertion_keys = [%q]\nflight_addr = \"127.0.0.1:0\"\n",
			addr, admin, sdlPath, "file://"+filepath.Join(keys, "assertion.pub"))
	}
	cfg := mustWrite(tb, filepath.Join(dir, "core.toml"), base+coreSection(addr, admin)+overloadAdmission)
	// Zero bounds are no bounds.
	unlimitedCfg := mustWrite(tb, filepath.Join(dir, "unlimited.toml"), base+coreSection(unlimitedAddr, "")+`
[admission]
max_concurrent = 0
max_concurrent_per_tenant = 0
max_queue = 0
max_queue_per_tenant = 0
`)
	mustRun(tb, "migrate", "--config", cfg)
	authorID := mustSchema(tb, pg.AdminURL(db))

	e := &env{coreURL: "http://" + addr + "/graphql", authorID: authorID, db: db}
	e.signer = mustSigner(tb, keys)
	// Enough connections for the open loop's requests in flight: with
	// fewer, requests would queue in the client, not in the server.
	e.direct = loadgen.NewLeanClient(overloadInFlight)
	timings := &serverTimings{RoundTripper: e.direct.Transport}
	e.direct.Transport = timings

	bin := mustBinary(tb, dir)
	// The runtime reads GOMEMLIMIT once, at start: set for the server, it
	// changes nothing in this process.
	tb.Setenv("GOMEMLIMIT", strconv.Itoa(overloadMemLimit))
	e.corePID = startFraise(tb, bin, "serve", "--config", cfg)
	u := &env{coreURL: "http://" + unlimitedAddr + "/graphql", authorID: authorID, db: db, signer: e.signer, direct: e.direct}
	u.corePID = startFraise(tb, bin, "serve", "--config", unlimitedCfg)
	mustListen(tb, addr)
	mustListen(tb, unlimitedAddr)
	return &overloadEnv{env: e, adminURL: "http://" + admin + "/metrics", unlimited: u, timings: timings}
}

// mustAnswer checks one answer of t in full before any load is measured.
func mustAnswer(tb testing.TB, t loadgen.Target, verify func([]byte) error) {
	tb.Helper()
	req, err := t.NewRequest()
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := t.Client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	} else {
		err = verify(body)
	}
	if err != nil {
		tb.Fatalf("cannot measure: the server does not answer the benchmark's operation correctly: %v\nbody: %.800s", err, body)
	}
}

// memWatch samples a server process's resident set (from /proc) and its Go
// heap in use (from its /metrics) while a load runs.
type memWatch struct {
	pid       int
	stopCh    chan struct{}
	done      sync.WaitGroup
	rss, heap uint64 // written by the sampler until done
}

func startMemWatch(pid int, metricsURL string) *memWatch {
	m := &memWatch{pid: pid, stopCh: make(chan struct{})}
	m.done.Add(1)
	go func() {
		defer m.done.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			if v := procStatus(pid, "VmRSS"); v > m.rss {
				m.rss = v
			}
			// The heap costs the server a scrape: four times a second.
			if n%12 == 0 {
				if v := scrapeMetric(metricsURL, "go_memstats_heap_inuse_bytes"); v > m.heap {
					m.heap = v
				}
			}
			select {
			case <-m.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// stop returns the peak RSS (the larger of the samples and the kernel's
// high-water mark, which a short spike between samples still raises) and
// the peak heap in use, in bytes.
func (m *memWatch) stop() (rss, heap uint64) {
	close(m.stopCh)
	m.done.Wait()
	return max(m.rss, procStatus(m.pid, "VmHWM")), m.heap
}

// procStatus reads a "kB" field of /proc/<pid>/status, in bytes; 0 when
// it cannot.
func procStatus(pid int, field string) uint64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// scrapeMetric returns the value of an unlabelled metric from a Prometheus
// text exposition, 0 when absent.
func scrapeMetric(url, name string) uint64 {
	for _, l := range scrape(url) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return uint64(f)
			}
		}
	}
	return 0
}

// scrapeAdmission returns the server's admission decision counters, one
// "labels=value" per line joined, for the log.
func scrapeAdmission(url string) string {
	var out []string
	for _, l := range scrape(url) {
		if v, ok := strings.CutPrefix(l, "fraise_admission_decisions_total"); ok {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return "none scraped"
	}
	return strings.Join(out, ", ")
}

func scrape(url string) []string {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}
