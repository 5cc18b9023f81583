package loadgen_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/loadgen"
)

func TestOpen(t *testing.T) {
	// Every fourth request is admitted, every fourth refused with 503 and
	// Retry-After, every fourth refused with 429 without it, every fourth
	// answered 500.
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			time.Sleep(2 * time.Millisecond) // the latency the test checks admitted answers have
			_, _ = w.Write([]byte(`{"data":{}}`))
		case 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	target := func(url string) loadgen.Target {
		return loadgen.Target{Client: loadgen.NewClient(64, nil), NewRequest: func() (*http.Request, error) {
			return http.NewRequest("GET", url, nil)
		}}
	}

	start := time.Now()
	res, err := loadgen.Open(context.Background(), loadgen.Arrivals{Rate: 400, Duration: 500 * time.Millisecond, MaxInFlight: 64}, target(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("run took %v, want the arrivals spread over 500ms", d)
	}
	if res.Offered != 200 || res.Dropped != 0 {
		t.Fatalf("offered %d, dropped %d, want 200 and 0", res.Offered, res.Dropped)
	}
	if res.Admitted != 50 || res.Refused != 100 || res.RefusedNoRetryAfter != 50 || res.Failures != 50 {
		t.Fatalf("got %d admitted, %d refused (%d without Retry-After), %d failed; want 50, 100 (50), 50",
			res.Admitted, res.Refused, res.RefusedNoRetryAfter, res.Failures)
	}
	if res.FirstErr == nil || res.P50 < 2*time.Millisecond || res.P99 < res.P50 {
		t.Fatalf("got first error %v, p50 %v, p99 %v; want an error and admitted latencies of 2ms or more", res.FirstErr, res.P50, res.P99)
	}
	if len(res.Latencies) != res.Admitted || !slices.IsSorted(res.Latencies) ||
		res.Latencies[0] < 2*time.Millisecond || loadgen.Percentile(res.Latencies, 99) != res.P99 {
		t.Fatalf("got %d latencies (sorted %t), want the %d admitted ones, sorted, whose p99 is %v",
			len(res.Latencies), slices.IsSorted(res.Latencies), res.Admitted, res.P99)
	}
	if got := res.RefusedShare(); got != 0.5 {
		t.Errorf("refused share %v, want 0.5", got)
	}
	if r := res.OfferedRPS(); r < 300 || r > 450 {
		t.Errorf("offered %v req/s, want about 400", r)
	}

	t.Run("beyond MaxInFlight arrivals are dropped, not sent", func(t *testing.T) {
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Millisecond) // slower than the 200 ms of arrivals: five stay in flight
		}))
		defer slow.Close()
		res, err := loadgen.Open(context.Background(), loadgen.Arrivals{Rate: 100, Duration: 200 * time.Millisecond, MaxInFlight: 5}, target(slow.URL))
		if err != nil {
			t.Fatal(err)
		}
		if res.Offered != 20 || res.Dropped != 15 || res.Admitted != 5 {
			t.Fatalf("got %d offered, %d dropped, %d admitted; want 20, 15, 5", res.Offered, res.Dropped, res.Admitted)
		}
	})

	t.Run("refuses a target off this machine and a bad shape", func(t *testing.T) {
		_, err := loadgen.Open(context.Background(), loadgen.Arrivals{Rate: 1, Duration: time.Second, MaxInFlight: 1}, target("http://192.0.2.1/"))
		if !errors.Is(err, loadgen.ErrNotLoopback) {
			t.Fatalf("got %v, want ErrNotLoopback", err)
		}
		for _, a := range []loadgen.Arrivals{{Duration: time.Second, MaxInFlight: 1}, {Rate: 1, MaxInFlight: 1}, {Rate: 1, Duration: time.Second}} {
			if _, err := loadgen.Open(context.Background(), a, target(srv.URL)); err == nil {
				t.Errorf("%+v: got no error, want the shape refused", a)
			}
		}
	})
}
