package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Arrivals is an open-loop run's shape: requests arrive at a constant rate
// whether or not earlier ones have been answered, as clients on the
// internet do, so a server that slows down faces a growing backlog instead
// of a politely waiting load generator (a closed loop hides overload).
type Arrivals struct {
	// Rate is the requests issued per second.
	Rate float64
	// Duration bounds the run: Rate × Duration requests are issued.
	Duration time.Duration
	// MaxInFlight bounds the requests outstanding at once, to keep the
	// generator's own memory bounded; an arrival that finds it reached is
	// not sent and is counted in Dropped (a generator's limit, reported so
	// that it is not mistaken for the server's refusals).
	MaxInFlight int
}

// OpenResult is what an open-loop run measured: the server's answers
// counted by kind (admitted, refused, failed) and the generator's own
// shortfalls (Dropped, Late) apart, so that an overloaded generator is not
// mistaken for an overloaded server.
type OpenResult struct {
	Offered int // arrivals scheduled
	Dropped int // arrivals the generator did not send (MaxInFlight)
	// Admitted is the 200 answers Check accepted; P50 and P99 are theirs,
	// from sending a request to its answer's arrival (WithArrival; when the
	// transport cannot tell, to its read).
	Admitted int
	// Refused is the 429 and 503 answers; RefusedNoRetryAfter those of them
	// without a Retry-After header.
	Refused, RefusedNoRetryAfter int
	Failures                     int           // transport errors, other statuses, answers Check refused
	FirstErr                     error         // the first failure, for the report
	Elapsed                      time.Duration // from the run's start to its last arrival
	P50, P99                     time.Duration
	// ReadP50 and ReadP99 time the same answers to the end of their read
	// by the generator: P50 and P99 plus whatever the generator's
	// goroutines waited for a CPU once the answers had arrived.
	ReadP50, ReadP99 time.Duration
	// Late is the p99 of how late the generator sent a request after its
	// scheduled arrival: a generator starved of CPU offers less than Rate.
	Late time.Duration
	// Latencies are the admitted answers' latencies, as P50 and P99 time
	// them, sorted: for percentiles over several runs.
	Latencies []time.Duration
}

// OfferedRPS is the arrivals scheduled per second of the run: below Rate
// when the generator fell behind its schedule.
func (r OpenResult) OfferedRPS() float64 { return perSecond(r.Offered, r.Elapsed) }

// AdmittedRPS is the admitted requests per second: under overload, the
// goodput a server keeps while it refuses the rest.
func (r OpenResult) AdmittedRPS() float64 { return perSecond(r.Admitted, r.Elapsed) }

// RefusedShare is the share of sent requests refused with 429 or 503,
// dropped arrivals left out: the server refused those, the generator did
// not send these.
func (r OpenResult) RefusedShare() float64 {
	sent := r.Offered - r.Dropped
	if sent <= 0 {
		return 0
	}
	return float64(r.Refused) / float64(sent)
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Open issues requests at a.Rate for a.Duration (or until ctx ends) and
// returns once every issued request is answered. Latency is timed from the
// moment a request is sent to the arrival of the end of its answer
// (WithArrival). It refuses any request whose host is not a loopback address.
func Open(ctx context.Context, a Arrivals, t Target) (OpenResult, error) {
	if a.Rate <= 0 || a.Duration <= 0 || a.MaxInFlight < 1 {
		return OpenResult{}, fmt.Errorf("loadgen: want rate > 0, duration > 0 and max in flight >= 1, got %v, %s and %d",
			a.Rate, a.Duration, a.MaxInFlight)
	}
	probe, err := t.NewRequest()
	if err != nil {
		return OpenResult{}, err
	}
	if err := checkLoopback(probe.URL); err != nil {
		return OpenResult{}, err
	}
	n := int(a.Rate * a.Duration.Seconds())
	var (
		mu       sync.Mutex
		res      = OpenResult{Offered: n}
		admitted = make([]time.Duration, 0, n)
		reads    = make([]time.Duration, 0, n)
		late     = make([]time.Duration, 0, n)
		wg       sync.WaitGroup
		slots    = make(chan struct{}, a.MaxInFlight)
	)
	fail := func(err error) {
		mu.Lock()
		res.Failures++
		res.FirstErr = firstErr(res.FirstErr, err)
		mu.Unlock()
	}
	interval := time.Duration(float64(time.Second) / a.Rate)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		sleepUntil(at)
		select {
		case slots <- struct{}{}:
		default:
			mu.Lock()
			res.Dropped++
			mu.Unlock()
			continue
		}
		req, err := t.NewRequest()
		if err != nil {
			<-slots
			fail(err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			var got time.Time
			t0 := time.Now()
			resp, err := t.Client.Do(req.WithContext(WithArrival(ctx, &got)))
			var body []byte
			var retryAfter string
			status := 0
			if err == nil {
				status, retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
				body, err = readAll(resp)
			}
			read := time.Since(t0)
			lat := read
			if err == nil && !got.IsZero() {
				lat = got.Sub(t0)
			}
			switch {
			case err != nil:
				fail(err)
				return
			case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
				mu.Lock()
				res.Refused++
				if retryAfter == "" {
					res.RefusedNoRetryAfter++
				}
				late = append(late, t0.Sub(at))
				mu.Unlock()
				return
			case status != http.StatusOK:
				fail(fmt.Errorf("status %d: %.300s", status, body))
				return
			}
			if t.Check != nil {
				if err := t.Check(status, body); err != nil {
					fail(err)
					return
				}
			}
			mu.Lock()
			admitted = append(admitted, lat)
			reads = append(reads, read)
			late = append(late, t0.Sub(at))
			mu.Unlock()
		}()
		// Let the request's goroutine start before the pacer sleeps: in
		// nanosleep the pacer's thread keeps its P, and a goroutine queued
		// on that P would wait for another to steal it.
		runtime.Gosched()
	}
	res.Elapsed = time.Since(start)
	wg.Wait()
	slices.Sort(admitted)
	slices.Sort(reads)
	slices.Sort(late)
	res.Admitted = len(admitted)
	res.P50, res.P99 = Percentile(admitted, 50), Percentile(admitted, 99)
	res.Latencies = admitted
	res.ReadP50, res.ReadP99 = Percentile(reads, 50), Percentile(reads, 99)
	res.Late = Percentile(late, 99)
	return res, nil
}

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// sleepUntil returns at t, or at once when t has passed. It sleeps with
// nanosleep(2), which wakes within the kernel's timer slack (50 µs): Go's
// timers wake within the runtime poller's granularity, about a
// millisecond on an idle process, so a pacer on time.Sleep sends its
// arrivals in clumps of several a millisecond, a burstier load than the
// rate says.
func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil) // EINTR: a little early
	}
}
