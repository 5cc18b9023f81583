package bench_test

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/loadgen"
)

// overheadRate is the fixed rate BenchmarkEnvoyOverhead offers each route,
// in requests per second. It must sit well below the ingress's saturation
// on two cores, so that what is measured is the latency Envoy, extauthz
// and the rate limiter add to a request, not the queueing of a saturated
// machine; and fixed, so that runs compare. On the busy development
// machine the read through the ingress cost 3 to 6 ms of CPU per request
// over all its processes (Envoy, `fraise dev`, Redis) and PostgreSQL's
// backends, so 100 a second used under a third of the two cores, while the
// closed-loop read through the ingress (BenchmarkVsPostGraphile/read/
// ingress) saturated at about 220 to 480 a second; a quiet machine leaves
// a wider margin. Each run reports the share of the machine's CPU the stack
// used (ingress-load-%). FRAISE_BENCH_RATE overrides it.
const overheadRate = 100

// overheadInFlight bounds the open loop's requests in flight (and so its
// connections): far above the one or two a below-saturation rate keeps
// open, so an arrival never waits for a connection.
const overheadInFlight = clientConns

// overheadShape is the run's shape: the rate, the rounds, each side's
// time per round, and each side's warm-up. The sides take turns, round
// after round, in alternating order (direct then ingress, ingress then
// direct): on a shared machine the load of other work drifts, and turns
// give both sides the same share of it.
func overheadShape() (rate float64, rounds int, round, warmup time.Duration) {
	rate, rounds, round, warmup = overheadRate, 6, 3*time.Second, 2*time.Second
	if os.Getenv("CI") != "" {
		rounds, round, warmup = 2, time.Second, 500*time.Millisecond
	}
	if r, err := strconv.ParseFloat(os.Getenv("FRAISE_BENCH_RATE"), 64); err == nil && r > 0 {
		rate = r
	}
	return rate, rounds, round, warmup
}

// overheadSide is one route's accumulated rounds.
type overheadSide struct {
	name      string
	t         *target
	lat       []time.Duration
	sent      int
	failures  int
	firstErr  error
	dropped   int
	late      time.Duration // the largest round's p99 lateness
	elapsed   time.Duration
	procs     []time.Duration // CPU by process, as t.procs
	pg        time.Duration
	cpuOK     bool
	roundP50s []time.Duration
}

// BenchmarkEnvoyOverhead measures the latency the ingress adds to a
// request: the bench's nested read (50 posts with their authors) sent at a
// fixed rate below saturation, open loop (loadgen.Open: arrivals on schedule
// whatever the answers), to the same core two ways:
//
//   - direct: to the core `fraise dev` runs behind Envoy, over mTLS with
//     the gateway's certificate (as Envoy connects), each request with an
//     identity assertion of its own, signed before the round starts;
//   - ingress: to Envoy with the end user's certificate and a JWT minted
//     once, through ext_authz (extauthz checks the JWT and the operation,
//     signs the request's assertion) and the rate limiter (gRPC over
//     mTLS, on Redis), then over mTLS to that core.
//
// Both routes use the same lean TLS client, and every answer is timed from
// its sending to its arrival on the generator's socket (the kernel's
// receive timestamp), so the generator's own waits for a CPU on the shared
// machine count on neither side. It reports each route's p50 and p99 over
// every round, added-p50-ms and added-p99-ms (the ingress's percentile
// less the direct one's), the CPU per request of each route (all the
// ingress's processes: `fraise dev`, Envoy, Redis, and the database's
// backends) and the share of the machine's CPU the stack used through the
// ingress. Target: added p50 under 1 ms.
func BenchmarkEnvoyOverhead(b *testing.B) {
	e := mustEnv(b)
	// This process is the load generator, sharing the cores with the
	// stack: collecting its garbage less often leaves them more CPU.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	rate, rounds, round, warmup := overheadShape()
	sides := []*overheadSide{
		{name: "direct", t: e.target(b, "read", "core-mtls"), cpuOK: true},
		{name: "ingress", t: e.target(b, "read", "ingress"), cpuOK: true},
	}
	arrivals := func(d time.Duration) loadgen.Arrivals {
		return loadgen.Arrivals{Rate: rate, Duration: d, MaxInFlight: overheadInFlight}
	}
	// Enough assertions for one run at the rate, signed just before it:
	// the signing is the generator's work, not the request's.
	signed := func(d time.Duration) int { return int(rate*d.Seconds()) + 1 }
	for _, s := range sides {
		s.procs = make([]time.Duration, len(s.t.procs))
		s.t.presign(1)
		mustAnswer(b, s.t.Target, s.t.verify)
		// Warm-up, not recorded: connections open (the TLS handshakes,
		// Envoy's to its upstreams), caches filled.
		s.t.presign(signed(warmup))
		w, err := loadgen.Open(context.Background(), arrivals(warmup), s.t.Target)
		if err != nil {
			b.Fatal(err)
		}
		if w.Failures > 0 {
			b.Fatalf("%s warm-up: %d failures, the first: %v", s.name, w.Failures, w.FirstErr)
		}
	}

	b.ResetTimer()
	for r := range rounds {
		order := sides
		if r%2 == 1 {
			order = []*overheadSide{sides[1], sides[0]}
		}
		for _, s := range order {
			b.StopTimer()
			s.t.presign(signed(round))
			b.StartTimer()
			cpu := startCPU(e.db, s.t.pids()...)
			res, err := loadgen.Open(context.Background(), arrivals(round), s.t.Target)
			procs, pg, ok := cpu.stop()
			if err != nil {
				b.Fatal(err)
			}
			s.lat = append(s.lat, res.Latencies...)
			s.roundP50s = append(s.roundP50s, res.P50)
			s.sent += res.Offered - res.Dropped
			s.failures += res.Failures
			s.firstErr = firstErr(s.firstErr, res.FirstErr)
			s.dropped += res.Dropped
			s.late = max(s.late, res.Late)
			s.elapsed += res.Elapsed
			s.cpuOK = s.cpuOK && ok
			if ok {
				for i, d := range procs {
					s.procs[i] += d
				}
				s.pg += pg
			}
			if live := s.t.liveSigned(); live > 0 {
				b.Errorf("%s round %d: %d assertions signed during the run, want every one signed before it", s.name, r, live)
			}
		}
	}
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	direct, ingress := sides[0], sides[1]
	p := func(s *overheadSide, q float64) time.Duration {
		slices.Sort(s.lat)
		return loadgen.Percentile(s.lat, q)
	}
	dP50, dP99, iP50, iP99 := p(direct, 50), p(direct, 99), p(ingress, 50), p(ingress, 99)
	addedP50, addedP99 := iP50-dP50, iP99-dP99
	b.ReportMetric(rate, "rate-req/s")
	b.ReportMetric(ms(dP50), "direct-p50-ms")
	b.ReportMetric(ms(dP99), "direct-p99-ms")
	b.ReportMetric(ms(iP50), "ingress-p50-ms")
	b.ReportMetric(ms(iP99), "ingress-p99-ms")
	b.ReportMetric(ms(addedP50), "added-p50-ms")
	b.ReportMetric(ms(addedP99), "added-p99-ms")
	b.ReportMetric(float64(len(direct.lat)), "direct-answers")
	b.ReportMetric(float64(len(ingress.lat)), "ingress-answers")
	b.ReportMetric(ms(max(direct.late, ingress.late)), "gen-late-p99-ms")
	b.ReportMetric(float64(direct.failures+ingress.failures), "failures")

	// CPU per request sent, over every round of the side.
	perReq := func(d time.Duration, s *overheadSide) time.Duration {
		if s.sent == 0 {
			return 0
		}
		return d / time.Duration(s.sent)
	}
	var directCPU, ingressCPU, envoyCPU time.Duration
	load := 0.0
	if direct.cpuOK && ingress.cpuOK {
		directCPU = perReq(direct.procs[0]+direct.pg, direct)
		var all time.Duration
		for i, d := range ingress.procs {
			all += d
			if ingress.t.procs[i].name == "envoy" {
				envoyCPU = perReq(d, ingress)
			}
		}
		all += ingress.pg
		ingressCPU = perReq(all, ingress)
		if ingress.elapsed > 0 {
			load = 100 * all.Seconds() / (ingress.elapsed.Seconds() * float64(runtime.NumCPU()))
		}
		b.ReportMetric(float64(directCPU.Microseconds()), "direct-cpu-us/req")
		b.ReportMetric(float64(ingressCPU.Microseconds()), "ingress-cpu-us/req")
		b.ReportMetric(float64(envoyCPU.Microseconds()), "envoy-cpu-us/req")
		b.ReportMetric(load, "ingress-load-%")
	}
	b.Logf("at %.0f req/s, open loop, %d rounds of %s a side: direct to the core (mTLS) p50 %s, p99 %s (%d answers); "+
		"through Envoy, extauthz and the rate limiter p50 %s, p99 %s (%d answers): added p50 %s (target under 1 ms: %s), added p99 %s; "+
		"round p50s direct %v, ingress %v; CPU per request (processes and PostgreSQL) direct %s, ingress %s (Envoy %s); "+
		"the stack used %.0f%% of the machine's CPU through the ingress; generator p99 lateness %s",
		rate, rounds, round, dP50, dP99, len(direct.lat), iP50, iP99, len(ingress.lat), addedP50, met(addedP50 < time.Millisecond), addedP99,
		direct.roundP50s, ingress.roundP50s, directCPU, ingressCPU, envoyCPU, load, max(direct.late, ingress.late))

	for _, s := range sides {
		if s.failures > 0 {
			b.Errorf("%s: %d of %d requests failed; the first: %v", s.name, s.failures, s.sent, s.firstErr)
		}
		if s.dropped > 0 {
			b.Errorf("%s: the generator could not send %d arrivals (%d in flight): the route was saturated, not below it", s.name, s.dropped, overheadInFlight)
		}
		if len(s.lat) == 0 {
			b.Errorf("%s: no answer", s.name)
		}
	}
	if load > 50 {
		b.Logf("the stack used %.0f%% of the machine's CPU at %.0f req/s: not well below saturation; lower FRAISE_BENCH_RATE", load, rate)
	}
}

// firstErr keeps the first error seen.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
