package cli

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/cmd/fraise/gctune"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
)

// TestCoreHeapFloor checks the core's heap goal floor stays at half the
// heap admission refuses at, so garbage alone never makes it refuse.
func TestCoreHeapFloor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a     config.Admission
		floor uint64
	}{
		{"no memory budget", config.Admission{MemoryThreshold: 0.8}, gctune.DefaultHeapFloor},
		{"a large budget", config.Admission{MemoryLimitBytes: 1 << 30, MemoryThreshold: 0.8}, gctune.DefaultHeapFloor},
		{"a small budget", config.Admission{MemoryLimitBytes: 100 << 20, MemoryThreshold: 0.8}, 40 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := coreHeapFloor(tc.a); got != tc.floor {
				t.Fatalf("got %d, want %d", got, tc.floor)
			}
		})
	}
}

// TestAppPassword checks which password `fraise migrate` takes from
// database.url for the app role: only the app role's own, from the URL.
func TestAppPassword(t *testing.T) {
	env := map[string]string{"DB": "postgres://fraise_app:from%20env@db/fraise", "PGPASSWORD": "admins"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		name, url, want string
		wantErr         bool
	}{
		{"the app role's password", "postgres://fraise_app:s3cret@db:5432/fraise?sslmode=verify-full", "s3cret", false},
		{"escaped, through a reference", "env://DB", "from env", false},
		{"another user", "postgres://someone:s3cret@db/fraise", "", false},
		{"no password: PGPASSWORD is not the app role's", "postgres://fraise_app@db/fraise", "", false},
		{"a key=value string", "host=db user=fraise_app password=s3cret", "", false},
		{"no URL", "", "", false},
		{"an unreadable reference", "file:///nonexistent/url", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appPassword(config.Database{URL: tc.url, AppRole: "fraise_app"}, getenv)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("got %q, %v; want %q (error: %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestAdmissionZeroes checks what 0 means for each admission bound, as
// config.Admission and docs/configuration.md say, against the controller
// serve builds from the configuration: unbounded for the concurrency
// bounds and the per-tenant queue, no queue at all for max_queue.
func TestAdmissionZeroes(t *testing.T) {
	signer, keys := assertiontest.New(t, nil)
	verifier := assertion.NewVerifier(keys, nil)
	const a, b = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	tokens := map[string]string{}
	for _, tenant := range []string{a, b} {
		// Admission reads the tenant and spends nothing: one assertion a
		// tenant serves every request here, which never reaches a handler
		// that would spend it.
		tok, err := signer.Sign(core.Principal{Subject: "s", Tenant: tenant}, "r",
			assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: "/graphql"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[tenant] = tok
	}
	const (
		runs  = 0 // admitted and running
		waits = 1 // queued
	)
	for _, tc := range []struct {
		name string
		set  func(*config.Admission)
		reqs []string // tenants, in order
		want []int    // runs, waits or the status of a refusal
	}{
		{"max_concurrent 0 is unbounded", func(c *config.Admission) { c.MaxConcurrent, c.MaxConcurrentPerTenant, c.MaxQueue = 0, 100, 0 },
			[]string{a, a, a, b, b, b}, []int{runs, runs, runs, runs, runs, runs}},
		{"max_concurrent_per_tenant 0 is unbounded", func(c *config.Admission) { c.MaxConcurrent, c.MaxConcurrentPerTenant, c.MaxQueue = 100, 0, 0 },
			[]string{a, a, a, a}, []int{runs, runs, runs, runs}},
		{"max_queue 0 queues none", func(c *config.Admission) { c.MaxConcurrent, c.MaxQueue = 1, 0 },
			[]string{a, b}, []int{runs, http.StatusServiceUnavailable}},
		{"max_queue 0 queues none of a tenant at its bound", func(c *config.Admission) { c.MaxConcurrent, c.MaxConcurrentPerTenant, c.MaxQueue = 100, 1, 0 },
			[]string{a, a, b}, []int{runs, http.StatusTooManyRequests, runs}},
		{"max_queue_per_tenant 0 is bounded by max_queue alone", func(c *config.Admission) { c.MaxConcurrent, c.MaxQueue, c.MaxQueuePerTenant = 1, 2, 0 },
			[]string{a, a, a, a}, []int{runs, waits, waits, http.StatusServiceUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default().Admission
			cfg.QueueTimeout = config.Duration{Duration: time.Minute}
			cfg.MemoryLimitBytes = 1 << 50 // no memory refusals, whatever GOMEMLIMIT says
			tc.set(&cfg)
			release := make(chan struct{})
			entered := make(chan struct{}, len(tc.reqs))
			gate := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				<-release
			})
			metrics := httpapi.NewMetrics()
			h := httpapi.VerifyAssertion(admitWith(gate, admitters(cfg, metrics.Registry).GraphQL, 1<<20, verifier, metrics), verifier)
			var held sync.WaitGroup
			for i, tenant := range tc.reqs {
				done := make(chan int, 1)
				held.Go(func() {
					req := httptest.NewRequest(http.MethodPost, "/graphql", nil)
					req.Header.Set(assertion.Header, tokens[tenant])
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					done <- rec.Code
				})
				switch want := tc.want[i]; want {
				case runs:
					select {
					case <-entered:
					case code := <-done:
						t.Fatalf("request %d: got %d, want it admitted", i, code)
					case <-time.After(5 * time.Second):
						t.Fatalf("request %d: not admitted, want it running", i)
					}
				case waits:
					select {
					case <-entered:
						t.Fatalf("request %d: admitted, want it queued", i)
					case code := <-done:
						t.Fatalf("request %d: got %d, want it queued", i, code)
					case <-time.After(100 * time.Millisecond):
					}
				default:
					select {
					case code := <-done:
						if code != want {
							t.Fatalf("request %d: got %d, want %d", i, code, want)
						}
					case <-entered:
						t.Fatalf("request %d: admitted, want it refused with %d", i, want)
					case <-time.After(5 * time.Second):
						t.Fatalf("request %d: still waiting, want it refused at once with %d", i, want)
					}
				}
			}
			close(release)
			held.Wait()
		})
	}
}

// TestHTTPServerTimeouts checks the core's HTTP servers against clients
// that hold connections: a request whose body stalls and a keep-alive
// connection left idle are closed once their timeouts pass, while a
// handler that runs longer than the read timeout, its body read, still
// answers.
func TestHTTPServerTimeouts(t *testing.T) {
	for name, to := range map[string]serverTimeouts{"core": coreHTTPTimeouts, "admin": adminHTTPTimeouts} {
		if to.header <= 0 || to.read <= 0 || to.idle <= 0 {
			t.Errorf("%s: got timeouts %+v, want a header, a read and an idle timeout", name, to)
		}
	}
	const read = 200 * time.Millisecond
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "could not read the request body", http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(3 * read) // outliving the read timeout is what is tested
			if err := r.Context().Err(); err != nil {
				http.Error(w, "cancelled: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(handler, serverTimeouts{header: read, read: read, idle: read})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := ln.Addr().String()

	// closed sends req on a new connection and reads until the server
	// closes it, failing if it has not within a few timeouts.
	closed := func(t *testing.T, req string) string {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(50 * read)) // generous: a busy CI machine fires timers late
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("connection still open after %v: %v (read %q)", time.Since(start), err, got)
		}
		return string(got)
	}
	t.Run("stalled body", func(t *testing.T) {
		got := closed(t, "POST /graphql HTTP/1.1\r\nHost: core\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		if got != "" && !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("got %q, want the connection closed, with a 400 at most", got)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		got := closed(t, "GET /healthz HTTP/1.1\r\nHost: core\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("got %q, want the request answered before the connection closed", got)
		}
	})
	t.Run("handler longer than the read timeout", func(t *testing.T) {
		resp, err := http.Post("http://"+addr+"/slow", "application/json", strings.NewReader(`{"query":"{ a }"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d %s, want 200: the read timeout must not bound the handler", resp.StatusCode, body)
		}
	})
}
