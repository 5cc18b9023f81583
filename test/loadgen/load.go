// This file is the closed-loop load generator: bounded in time, loopback
// only, a fixed number of concurrent workers on keep-alive connections,
// percentiles from every recorded latency.

package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Load is a closed-loop run's shape: a fixed number of workers, each
// sending its next request as soon as its last was answered, which is what
// finds a server's saturation throughput (Open measures latency at a given
// rate instead). The warm-up is not recorded so that connections, caches
// and JITs are warm before anything is measured.
type Load struct {
	// Duration bounds the run (after Warmup, which is not recorded).
	Duration, Warmup time.Duration
	// Concurrency is the number of workers, each with one request in flight.
	Concurrency int
}

// Target is what a run sends and how it checks each answer: a server that
// answers fast but wrongly must count as failing, not as fast.
type Target struct {
	// Client sends the requests; NewClient or NewLeanClient, so that
	// connections are kept alive and the generator's own cost is small.
	Client *http.Client
	// NewRequest returns a fresh request (its body unread) for each call.
	NewRequest func() (*http.Request, error)
	// Check returns an error for a wrong answer; nil accepts any 200.
	Check func(status int, body []byte) error
}

// Result is what a closed-loop run measured: throughput and latency
// percentiles of the accepted answers, with failures counted apart so that
// a run that failed fast is not mistaken for a fast one.
type Result struct {
	Requests int           // answered and accepted, within Duration
	Failures int           // transport errors and answers Check refused
	FirstErr error         // the first failure, for the report
	Elapsed  time.Duration // the recorded part of the run
	// P50 and P99 time requests from their sending to their answer's
	// arrival (WithArrival; when the transport cannot tell, to its read).
	P50, P99 time.Duration
	// ReadP50 and ReadP99 time them to the end of the answer's read.
	ReadP50, ReadP99 time.Duration
}

// RPS is the accepted requests per second over the recorded part of the
// run, 0 when nothing was recorded: the closed loop's throughput.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// ErrNotLoopback refuses targets off this machine: the load generator must
// never load anything but the servers a benchmark started.
var ErrNotLoopback = errors.New("loadgen: load target is not a loopback address")

// Run sends requests from l.Concurrency workers until l.Warmup and then
// l.Duration have passed (or ctx ends) and returns the measurements of the
// requests sent after the warm-up. It refuses any request whose host is not
// a loopback address (ErrNotLoopback), and a shape without workers or time.
func Run(ctx context.Context, l Load, t Target) (Result, error) {
	if l.Concurrency < 1 || l.Duration <= 0 {
		return Result{}, fmt.Errorf("loadgen: want concurrency >= 1 and duration > 0, got %d and %s", l.Concurrency, l.Duration)
	}
	probe, err := t.NewRequest()
	if err != nil {
		return Result{}, err
	}
	if err := checkLoopback(probe.URL); err != nil {
		return Result{}, err
	}
	return closedLoop(ctx, l, func(ctx context.Context) (lat, read time.Duration, fatal bool, err error) {
		req, err := t.NewRequest()
		if err != nil {
			return 0, 0, true, err
		}
		t0 := time.Now()
		status, body, arrived, end, err := do(t.Client, req.WithContext(ctx))
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d: %.300s", status, body)
		}
		if err == nil && t.Check != nil {
			err = t.Check(status, body)
		}
		return arrived.Sub(t0), end.Sub(t0), false, err
	}), nil
}

// closedLoop calls call from l.Concurrency workers, each as soon as its
// last call returned, until l.Warmup and then l.Duration have passed (or
// ctx ends), and measures the calls started after the warm-up: call
// returns how long its answer took to arrive and to be read whole, and
// fatal to stop its worker (the request could not even be built). A call
// the deadline cuts off counts neither as a success nor as a failure.
func closedLoop(ctx context.Context, l Load, call func(context.Context) (lat, read time.Duration, fatal bool, err error)) Result {
	start := time.Now()
	recordFrom := start.Add(l.Warmup)
	ctx, cancel := context.WithDeadline(ctx, recordFrom.Add(l.Duration))
	defer cancel()
	type worker struct {
		lat, read []time.Duration
		failures  int
		err       error
	}
	workers := make([]worker, l.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, 4096)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				lat, read, fatal, err := call(ctx)
				if fatal {
					w.failures++
					w.err = firstErr(w.err, err)
					return
				}
				if ctx.Err() != nil {
					return
				}
				if t0.Before(recordFrom) {
					continue
				}
				if err != nil {
					w.failures++
					w.err = firstErr(w.err, err)
					continue
				}
				w.lat = append(w.lat, lat)
				w.read = append(w.read, read)
			}
		}()
	}
	wg.Wait()
	var all, read []time.Duration
	res := Result{Elapsed: time.Since(recordFrom)}
	for _, w := range workers {
		all = append(all, w.lat...)
		read = append(read, w.read...)
		res.Failures += w.failures
		res.FirstErr = firstErr(res.FirstErr, w.err)
	}
	res.Requests = len(all)
	slices.Sort(all)
	res.P50, res.P99 = Percentile(all, 50), Percentile(all, 99)
	slices.Sort(read)
	res.ReadP50, res.ReadP99 = Percentile(read, 50), Percentile(read, 99)
	return res
}

// firstErr keeps the first error seen.
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// do sends req and reads its answer whole: read is when the read ended,
// arrived when the answer arrived (WithArrival) or else read.
func do(c *http.Client, req *http.Request) (status int, body []byte, arrived, read time.Time, err error) {
	var at time.Time
	resp, err := c.Do(req.WithContext(WithArrival(req.Context(), &at)))
	if err != nil {
		now := time.Now()
		return 0, nil, now, now, err
	}
	defer resp.Body.Close()
	// Reading the whole body keeps the connection reusable (keep-alive)
	// and counts the transfer in the latency.
	body, err = io.ReadAll(resp.Body)
	read, arrived = time.Now(), at
	if arrived.IsZero() {
		arrived = read
	}
	return resp.StatusCode, body, arrived, read, err
}

// Percentile returns the nearest-rank p-th percentile of sorted latencies,
// 0 for none. Nearest rank returns a latency that was measured, never an
// interpolation between two, and is exported so that callers can take
// percentiles over several runs' latencies (OpenResult.Latencies).
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest value with at least p% of values <= it.
	rank := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func checkLoopback(u *url.URL) error {
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotLoopback, u.Host)
}

// NewClient returns a net/http client that keeps up to conns connections
// alive to one host, so every worker reuses its own connection and no
// handshake is measured: HTTP/1.1 without compression, so that every server
// is loaded the same way. tr, when not nil, carries the TLS settings and is
// changed in place. LeanTransport costs less CPU per request; NewClient is
// for what it does not speak.
func NewClient(conns int, tr *http.Transport) *http.Client {
	if tr == nil {
		tr = &http.Transport{}
	}
	tr.MaxIdleConns = conns
	tr.MaxIdleConnsPerHost = conns
	tr.MaxConnsPerHost = conns
	tr.IdleConnTimeout = time.Minute
	tr.DisableCompression = true
	tr.ForceAttemptHTTP2 = false
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// RunFunc calls call from l.Concurrency workers until l.Warmup and then
// l.Duration have passed (or ctx ends), recording the calls started after
// the warm-up: Run's closed loop for work that is not an HTTP request (a
// database call measured without a server, as the floor under servers).
func RunFunc(ctx context.Context, l Load, call func(context.Context) error) (Result, error) {
	if l.Concurrency < 1 || l.Duration <= 0 {
		return Result{}, fmt.Errorf("loadgen: want concurrency >= 1 and duration > 0, got %d and %s", l.Concurrency, l.Duration)
	}
	return closedLoop(ctx, l, func(ctx context.Context) (lat, read time.Duration, fatal bool, err error) {
		t0 := time.Now()
		err = call(ctx)
		d := time.Since(t0)
		return d, d, false, err
	}), nil
}
