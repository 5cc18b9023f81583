package loadgen_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/loadgen"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{name: "none", sorted: nil, p: 50, want: 0},
		{name: "one", sorted: ms(7), p: 99, want: 7 * time.Millisecond},
		{name: "median of four is the second", sorted: ms(1, 2, 3, 4), p: 50, want: 2 * time.Millisecond},
		{name: "p50 of 1..100", sorted: ms(hundred...), p: 50, want: 50 * time.Millisecond},
		{name: "p99 of 1..100", sorted: ms(hundred...), p: 99, want: 99 * time.Millisecond},
		{name: "p100 is the max", sorted: ms(1, 5, 9), p: 100, want: 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loadgen.Percentile(tt.sorted, tt.p); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRun(t *testing.T) {
	var served, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		time.Sleep(time.Millisecond) // the work the test wants p50 >= 1ms of
		_, _ = w.Write([]byte(`{"data":{}}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := loadgen.NewClient(4, nil)
	target := func(query string, check func(int, []byte) error) loadgen.Target {
		return loadgen.Target{Client: client, Check: check, NewRequest: func() (*http.Request, error) {
			return http.NewRequest("GET", srv.URL+"/"+query, nil)
		}}
	}
	load := loadgen.Load{Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Concurrency: 4}

	res, err := loadgen.Run(context.Background(), load, target("", nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 20 || res.Failures != 0 {
		t.Fatalf("got %d requests and %d failures (%v), want at least 20 and none", res.Requests, res.Failures, res.FirstErr)
	}
	if res.P50 < time.Millisecond || res.P99 < res.P50 {
		t.Errorf("got p50 %s and p99 %s, want 1ms <= p50 <= p99", res.P50, res.P99)
	}
	if res.Elapsed < load.Duration || res.Elapsed > load.Duration+time.Second {
		t.Errorf("got elapsed %s, want about %s", res.Elapsed, load.Duration)
	}
	if int64(res.Requests) > served.Load() {
		t.Errorf("got %d requests recorded, more than the %d served", res.Requests, served.Load())
	}
	if got := conns.Load(); got > 4 {
		t.Errorf("got %d connections, want at most 4 kept alive", got)
	}

	res, err = loadgen.Run(context.Background(), load, target("?fail=1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Failures == 0 || res.FirstErr == nil || !strings.Contains(res.FirstErr.Error(), "503") {
		t.Errorf("got %d requests, %d failures (%v), want only failures naming the 503", res.Requests, res.Failures, res.FirstErr)
	}

	wrong := errors.New("wrong answer")
	res, err = loadgen.Run(context.Background(), load, target("", func(int, []byte) error { return wrong }))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || !errors.Is(res.FirstErr, wrong) {
		t.Errorf("got %d requests and first error %v, want none accepted and the check's error", res.Requests, res.FirstErr)
	}
}

func TestRunRefusesOtherHosts(t *testing.T) {
	tests := []struct {
		name, url string
		wantErr   bool
	}{
		{name: "loopback v4", url: "http://127.0.0.1:1/"},
		{name: "loopback v6", url: "http://[::1]:1/"},
		{name: "a routable address", url: "http://192.0.2.1/", wantErr: true},
		{name: "a name", url: "http://example.com/", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := loadgen.Target{Client: loadgen.NewClient(1, nil), NewRequest: func() (*http.Request, error) {
				return http.NewRequest("GET", tt.url, nil)
			}}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing is sent: only the address check matters here
			_, err := loadgen.Run(ctx, loadgen.Load{Duration: time.Millisecond, Concurrency: 1}, target)
			if got := errors.Is(err, loadgen.ErrNotLoopback); got != tt.wantErr {
				t.Fatalf("got error %v, want ErrNotLoopback: %v", err, tt.wantErr)
			}
		})
	}
}

// TestRunFunc: every call after the warm-up is recorded, as a success or
// as a failure with the first error kept.
func TestRunFunc(t *testing.T) {
	var n atomic.Int64
	boom := errors.New("boom")
	res, err := loadgen.RunFunc(context.Background(), loadgen.Load{Duration: 50 * time.Millisecond, Concurrency: 2}, func(context.Context) error {
		if n.Add(1)%2 == 0 {
			return boom
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Failures == 0 || !errors.Is(res.FirstErr, boom) {
		t.Fatalf("got %d requests, %d failures (%v), want both counted and boom kept", res.Requests, res.Failures, res.FirstErr)
	}
	if total := int64(res.Requests + res.Failures); total > n.Load() || total < n.Load()-2 {
		t.Fatalf("recorded %d of %d calls, want all but the at most 2 cut off by the deadline", total, n.Load())
	}
	if _, err := loadgen.RunFunc(context.Background(), loadgen.Load{}, func(context.Context) error { return nil }); err == nil {
		t.Fatal("a load without workers or duration: got no error")
	}
}
