package bench_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/bench"
)

// TestLeanTransport checks the lean load generator's HTTP/1.1 against
// net/http's server: what it sends arrives whole, both body framings read
// back exactly, connections are kept alive and bounded, and an answer
// that closes its connection is honoured.
func TestLeanTransport(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Retry-After", "3")
			w.Header().Set("X-Got", r.Method+" "+r.URL.RawQuery+" "+r.Header.Get("X-Token")+" "+r.Host)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(b)
		case "/chunked":
			for i := range 3 {
				_, _ = io.WriteString(w, strings.Repeat(string(rune('a'+i)), 5000))
				w.(http.Flusher).Flush()
			}
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := bench.NewLeanClient(2)

	do := func(t *testing.T, method, path, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Token", "tok")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	t.Run("request and answer arrive whole", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, "/echo?x=1", `{"query":"{ a }"}`)
		host := strings.TrimPrefix(srv.URL, "http://")
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "3" || body != `{"query":"{ a }"}` ||
			resp.Header.Get("X-Got") != "POST x=1 tok "+host {
			t.Fatalf("got %d %v %q", resp.StatusCode, resp.Header, body)
		}
	})
	t.Run("chunked body", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, "/chunked", "")
		want := strings.Repeat("a", 5000) + strings.Repeat("b", 5000) + strings.Repeat("c", 5000)
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d and %d bytes, want 200 and %d", resp.StatusCode, len(body), len(want))
		}
	})
	t.Run("keep-alive, bounded", func(t *testing.T) {
		before := conns.Load()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 20 {
					if resp, _ := do(t, http.MethodPost, "/echo", "x"); resp.StatusCode != 503 {
						t.Errorf("got %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		// The two connections the earlier subtests left open, reused.
		if n := conns.Load() - before; n > 1 {
			t.Fatalf("160 requests opened %d new connections, want at most 2 in all", n)
		}
	})
	t.Run("Connection: close is honoured", func(t *testing.T) {
		before := conns.Load()
		for range 5 {
			if _, body := do(t, http.MethodGet, "/close", ""); body != "bye" {
				t.Fatalf("got %q", body)
			}
		}
		// The two idle connections serve the first two, then each needs
		// a new one.
		if n := conns.Load() - before; n != 3 {
			t.Fatalf("five answers that close their connection took %d new connections, want 3", n)
		}
	})
	t.Run("the context's end stops a request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
		start := time.Now()
		_, err := client.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 250*time.Millisecond {
			t.Fatalf("got %v after %s, want the deadline, promptly", err, time.Since(start))
		}
	})
	t.Run("https is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:1/", nil)
		if _, err := client.Do(req); err == nil {
			t.Fatal("want an error for https")
		}
	})
}
