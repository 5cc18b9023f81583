package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/internal/await"
)

// gate is a handler that holds every request until opened, so tests decide
// how many requests run at once.
type gate struct {
	open    chan struct{}
	running atomic.Int32
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.running.Add(1)
	<-g.open
	w.WriteHeader(http.StatusOK)
}

type admitted struct {
	srv     *httptest.Server
	ctrl    *admission.Controller
	gate    *gate
	reg     *prometheus.Registry
	metrics *admission.Metrics
	sign    func(tenant string) string
}

func mustAdmission(tb testing.TB, o admission.Options) *admitted {
	tb.Helper()
	signer, keys := assertiontest.New(tb, nil)
	a := &admitted{gate: &gate{open: make(chan struct{})}, reg: prometheus.NewRegistry()}
	a.metrics = admission.NewMetrics(a.reg)
	o.Class, o.Observe = admission.ClassGraphQL, a.metrics.Observe
	a.ctrl = admission.New(o)
	a.sign = func(tenant string) string {
		return assertiontest.Sign(tb, signer, core.Principal{Subject: "u", Tenant: tenant},
			assertiontest.GraphQL("POST", "/graphql", []byte(`{"query":"{ a }"}`)))
	}
	a.srv = httptest.NewServer(httpapi.Admit(a.gate, httpapi.AdmissionOptions{
		Controller:   a.ctrl,
		Tenant:       httpapi.TenantFromAssertion(assertion.NewVerifier(keys, nil)),
		MaxBodyBytes: 1 << 20,
	}))
	tb.Cleanup(func() {
		select {
		case <-a.gate.open:
		default:
			close(a.gate.open)
		}
		a.srv.Close()
	})
	return a
}

// do sends one request as tenant ("" without an assertion).
func (a *admitted) do(tb testing.TB, tenant string) *http.Response {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "POST", a.srv.URL+"/graphql", strings.NewReader(`{"query":"{ a }"}`))
	if err != nil {
		tb.Fatal(err)
	}
	if tenant != "" {
		req.Header.Set(assertion.Header, a.sign(tenant))
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

func wantRefused(tb testing.TB, resp *http.Response, status int, code string) {
	tb.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != status {
		tb.Fatalf("got status %d, want %d", resp.StatusCode, status)
	}
	if got := resp.Header.Get("Retry-After"); got != "2" {
		tb.Errorf("got Retry-After %q, want 2", got)
	}
	var body struct {
		Errors []struct {
			Message    string         `json:"message"`
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Extensions["code"] != code || body.Errors[0].Message == "" {
		tb.Errorf("got body %s, want one GraphQL error with extensions.code %s", b, code)
	}
}

func waitFor(tb testing.TB, what string, ok func() bool) {
	tb.Helper()
	await.Until(tb, 5*time.Second, what, ok)
}

func TestAdmitQueuesABurstAndRefusesBeyond(t *testing.T) {
	a := mustAdmission(t, admission.Options{MaxConcurrent: 2, MaxQueue: 2, QueueTimeout: 10 * time.Second, RetryAfter: 2 * time.Second})
	var wg sync.WaitGroup
	statuses := make(chan int, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := a.do(t, "")
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	waitFor(t, "two running and two queued", func() bool {
		s := a.ctrl.Stats()
		return s.Running == 2 && s.Queued == 2 && a.gate.running.Load() == 2
	})
	wantRefused(t, a.do(t, ""), http.StatusServiceUnavailable, "UNAVAILABLE")

	close(a.gate.open)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("burst request: got %d, want 200 after waiting", s)
		}
	}
	if got := (decisions(t, a, "waited", "")); got != 2 {
		t.Errorf("got %v waited decisions, want 2", got)
	}
	if got := (decisions(t, a, "refused", "queue_full")); got != 1 {
		t.Errorf("got %v queue_full refusals, want 1", got)
	}
}

func TestAdmitRefusesATenantOverItsShare(t *testing.T) {
	a := mustAdmission(t, admission.Options{MaxConcurrent: 10, MaxPerTenant: 1, RetryAfter: 2 * time.Second})
	const tenant = "11111111-1111-4111-8111-111111111111"
	done := make(chan int)
	go func() {
		resp := a.do(t, tenant)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, "the tenant's request running", func() bool { return a.gate.running.Load() == 1 })
	wantRefused(t, a.do(t, tenant), http.StatusTooManyRequests, "RATE_LIMITED")

	// Another tenant, and a request without an assertion, still run.
	for _, other := range []string{"22222222-2222-4222-8222-222222222222", ""} {
		go func() {
			resp := a.do(t, other)
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	waitFor(t, "three running", func() bool { return a.gate.running.Load() == 3 })
	close(a.gate.open)
	for i := 0; i < 3; i++ {
		if s := <-done; s != http.StatusOK {
			t.Errorf("got %d, want 200", s)
		}
	}
}

func TestAdmitRefusesUnderMemoryPressure(t *testing.T) {
	var heap atomic.Uint64
	a := mustAdmission(t, admission.Options{MemoryLimit: 100 << 20, MemoryThreshold: 0.8, HeapInUse: heap.Load, RetryAfter: 2 * time.Second})
	close(a.gate.open)
	heap.Store(81 << 20)
	wantRefused(t, a.do(t, ""), http.StatusServiceUnavailable, "UNAVAILABLE")
	heap.Store(79 << 20)
	resp := a.do(t, "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("below the threshold: got %d, want 200", resp.StatusCode)
	}
	if got := (decisions(t, a, "refused", "memory")); got != 1 {
		t.Errorf("got %v memory refusals, want 1", got)
	}
}

// decisions returns the graphql class's decisions counted for result and
// reason, read back through the registry the admin endpoint serves.
func decisions(tb testing.TB, a *admitted, result, reason string) float64 {
	tb.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "fraise_admission_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["class"] == "graphql" && labels["result"] == result && labels["reason"] == reason {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func TestAdmitRefusesAFullCoreBeforeCheckingTheTenant(t *testing.T) {
	// One slot, no queue: once it runs, the core is full for every tenant,
	// so even the running tenant's next request is refused as the core's
	// overload (503), not its own share (429): the refusal did not need
	// the assertion's signature checked.
	a := mustAdmission(t, admission.Options{MaxConcurrent: 1, MaxPerTenant: 1, RetryAfter: 2 * time.Second})
	const tenant = "11111111-1111-4111-8111-111111111111"
	done := make(chan int)
	go func() {
		resp := a.do(t, tenant)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, "the tenant's request running", func() bool { return a.gate.running.Load() == 1 })
	wantRefused(t, a.do(t, tenant), http.StatusServiceUnavailable, "UNAVAILABLE")
	close(a.gate.open)
	if s := <-done; s != http.StatusOK {
		t.Errorf("got %d, want 200", s)
	}
	if got := decisions(t, a, "refused", "queue_full"); got != 1 {
		t.Errorf("got %v queue_full refusals, want 1", got)
	}
	if got := decisions(t, a, "refused", "tenant_queue_full"); got != 0 {
		t.Errorf("got %v tenant_queue_full refusals, want 0", got)
	}
}

func TestAdmitTimesTheCore(t *testing.T) {
	a := mustAdmission(t, admission.Options{MaxConcurrent: 1, MaxQueue: 1, QueueTimeout: 10 * time.Second, RetryAfter: 2 * time.Second})
	resps := make(chan *http.Response, 2)
	for i := 0; i < 2; i++ {
		go func() { resps <- a.do(t, "") }()
		waitFor(t, "running or queued", func() bool { s := a.ctrl.Stats(); return s.Running+s.Queued == i+1 })
	}
	// Both are held 50 ms: the first runs, the second waits for it, and
	// each one's Server-Timing counts its own wait (the duration is what
	// is measured; Server-Timing reads the real clock).
	time.Sleep(50 * time.Millisecond)
	close(a.gate.open)
	for i := 0; i < 2; i++ {
		resp := <-resps
		resp.Body.Close()
		v, ok := strings.CutPrefix(resp.Header.Get("Server-Timing"), "core;dur=")
		if !ok {
			t.Fatalf("got Server-Timing %q, want core;dur=<ms>", resp.Header.Get("Server-Timing"))
		}
		ms, err := strconv.ParseFloat(v, 64)
		if err != nil || ms < 50 || ms > 10000 {
			t.Errorf("got core;dur=%s, want the 50 ms or more the request was held", v)
		}
	}
	// A refusal is not the core's work: no timing.
	a2 := mustAdmission(t, admission.Options{MaxConcurrent: 1, RetryAfter: 2 * time.Second})
	go func() { resp := a2.do(t, ""); resp.Body.Close() }()
	waitFor(t, "one running", func() bool { return a2.gate.running.Load() == 1 })
	resp := a2.do(t, "")
	if got := resp.Header.Get("Server-Timing"); got != "" {
		t.Errorf("refusal carries Server-Timing %q, want none", got)
	}
	wantRefused(t, resp, http.StatusServiceUnavailable, "UNAVAILABLE")
}

// TestQueuedRequestLeavesWhenItsClientDoes: a POST waiting in the queue
// whose client goes away leaves the queue then, as a GET does, rather than
// keeping its place (and maybe taking a slot) for its whole queue timeout.
func TestQueuedRequestLeavesWhenItsClientDoes(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			a := mustAdmission(t, admission.Options{MaxConcurrent: 1, MaxQueue: 5, QueueTimeout: time.Minute, RetryAfter: 2 * time.Second})
			go func() { r := a.do(t, ""); r.Body.Close() }() // holds the slot
			waitFor(t, "the slot taken", func() bool { return a.gate.running.Load() == 1 })
			conn, err := net.Dial("tcp", strings.TrimPrefix(a.srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			body := `{"query":"{ a }"}`
			if method == "GET" {
				fmt.Fprintf(conn, "GET /graphql?query=x HTTP/1.1\r\nHost: x\r\n\r\n")
			} else {
				fmt.Fprintf(conn, "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}
			waitFor(t, "the request queued", func() bool { return a.ctrl.Stats().Queued == 1 })
			conn.Close()
			waitFor(t, "the waiter gone with its client", func() bool { return a.ctrl.Stats().Queued == 0 })
		})
	}
}
