package security_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/await"
)

// stalledClients is how many stalled requests the stalled-body attacks
// hold open at once.
const stalledClients = 16

var slowAttacks = []attack{
	{
		name: "slow-headers", class: classSlow, slow: true,
		does: "opens a request and sends its headers one byte every half second, never finishing them (slowloris)",
		want: "Envoy cuts the connection off at request_headers_timeout (10 s); a request sent meanwhile is served",
		run: func(t *testing.T, e *env) string {
			timeouts := e.envoyStat(t, "http.ingress.downstream_rq_header_timeout")
			conn := e.dialH1(t)
			start := time.Now()
			if _, err := io.WriteString(conn, "POST /graphql HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				// The attacker's pace is the attack: a byte every tick.
				tick := time.NewTicker(500 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := conn.Write([]byte("a")); err != nil {
						return
					}
				}
			}()
			status, g := e.query(t, e.token(t, acme, "victor", "viewer"), usersQuery)
			wantAcmeMasked(t, status, g)
			_ = conn.SetReadDeadline(start.Add(30 * time.Second))
			answer, err := io.ReadAll(conn) // until Envoy closes the connection
			took := time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the connection still open after %s, want it cut off at 10 s", took.Round(time.Second))
			}
			if took > 20*time.Second {
				t.Errorf("cut off after %s, want about 10 s", took.Round(time.Second))
			}
			if n := e.envoyStat(t, "http.ingress.downstream_rq_header_timeout"); n <= timeouts {
				t.Errorf("Envoy's downstream_rq_header_timeout is %d, was %d: want it counted", n, timeouts)
			}
			first, _, _ := strings.Cut(string(answer), "\r\n")
			return fmt.Sprintf("cut off by Envoy after %.1f s (%s); a concurrent request served 200", took.Seconds(), or(first, "closed"))
		},
	},
	{
		name: "tls-handshake-never-started", class: classSlow, slow: true,
		does: "opens a TCP connection to the ingress and never starts TLS (each such connection holds one of gateway.max_connections, 10,000)",
		want: "Envoy closes it within 15 s; a request sent meanwhile is served",
		run: func(t *testing.T, e *env) string {
			conn, err := net.DialTimeout("tcp", e.s.Addrs.Gateway, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			status, g := e.query(t, e.token(t, acme, "victor", "viewer"), usersQuery)
			wantAcmeMasked(t, status, g)
			_ = conn.SetReadDeadline(start.Add(20 * time.Second))
			_, err = io.ReadAll(conn) // until Envoy closes the connection
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				got := fmt.Sprintf("still open after %s: Envoy holds a connection that never starts TLS, so 10,000 of them "+
					"(gateway.max_connections) shut every client out; the ingress's filter chain needs a transport_socket_connect_timeout",
					time.Since(start).Round(time.Second))
				t.Error(got)
				return got
			}
			return fmt.Sprintf("closed by Envoy after %.1f s; a concurrent request served 200", time.Since(start).Seconds())
		},
	},
	{
		name: "stalled-body-http1", class: classSlow,
		does: fmt.Sprintf("opens %d HTTP/1.1 requests with a valid token announcing 1,000-byte bodies, sends 20 bytes of each and stalls", stalledClients),
		want: "Envoy holds them (buffering the body for extauthz, up to stream_idle_timeout): extauthz and the server see none; a concurrent request is served",
		run: func(t *testing.T, e *env) string {
			tok := e.token(t, acme, "victor", "viewer")
			return e.stalled(t, func() (func(), func() bool) {
				conn := e.dialH1(t)
				fmt.Fprintf(conn, "POST /graphql HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"query\":\"{ users {", tok)
				// Held: Envoy has answered nothing on the connection.
				pending := func() bool {
					_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					_, err := conn.Read(make([]byte, 1))
					ne, ok := err.(net.Error)
					return ok && ne.Timeout()
				}
				return func() { conn.Close() }, pending
			})
		},
	},
	{
		name: "stalled-body-http2", class: classSlow,
		does: fmt.Sprintf("opens %d HTTP/2 streams with a valid token, sends part of each body and never ends it", stalledClients),
		want: "Envoy holds them: extauthz and the server see none; a concurrent request is served",
		run: func(t *testing.T, e *env) string {
			tok := e.token(t, acme, "victor", "viewer")
			return e.stalled(t, func() (func(), func() bool) {
				pr, pw := io.Pipe()
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+e.s.Addrs.Gateway+"/graphql", pr)
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				done := make(chan struct{})
				go func() {
					defer close(done)
					if resp, err := e.s.Client.Do(req); err == nil {
						resp.Body.Close()
					}
				}()
				go func() { _, _ = io.WriteString(pw, `{"query":"{ users {`) }()
				// Held: the client has had no answer.
				pending := func() bool {
					select {
					case <-done:
						return false
					default:
						return true
					}
				}
				return func() {
					cancel()
					pw.CloseWithError(io.ErrUnexpectedEOF)
					<-done
				}, pending
			})
		},
	},
}

// stalled opens stalledClients requests with open, waits until Envoy has
// received them all (its request counter: its active gauge also counts
// what other attacks still hold or are closing), checks that each is still
// held (pending: no answer yet), that neither extauthz nor the server saw
// one and that a concurrent request is served; then it closes them.
func (e *env) stalled(t *testing.T, open func() (close func(), pending func() bool)) string {
	t.Helper()
	total := e.envoyStat(t, "http.ingress.downstream_rq_total")
	before := e.counts(t)
	var held []func() bool
	for range stalledClients {
		closeFn, pending := open()
		t.Cleanup(closeFn)
		held = append(held, pending)
	}
	// Envoy announces no event: its counter is polled.
	if !await.WithinEvery(15*time.Second, 20*time.Millisecond, func() bool {
		return e.envoyStat(t, "http.ingress.downstream_rq_total") >= total+stalledClients
	}) {
		t.Fatalf("Envoy received %d requests after 15 s, want %d more than %d", e.envoyStat(t, "http.ingress.downstream_rq_total"), stalledClients, total)
	}
	if by := e.by(t, before); by != byEnvoy {
		t.Fatalf("a stalled request reached %s", by)
	}
	status, g := e.query(t, e.token(t, acme, "victor", "viewer"), usersQuery)
	wantAcmeMasked(t, status, g)
	for i, pending := range held {
		if !pending() {
			t.Fatalf("stalled request %d was answered: Envoy should hold it until its body ends or stream_idle_timeout", i)
		}
	}
	return fmt.Sprintf("%d stalled bodies held by Envoy, none reached extauthz or the server; a concurrent request served 200", stalledClients)
}

// dialH1 opens an HTTP/1.1 connection to the ingress with the user's
// certificate, closed when t ends.
func (e *env) dialH1(t *testing.T) *tls.Conn {
	t.Helper()
	c := e.s.TLSConfig(t, true)
	c.NextProtos = []string{"http/1.1"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.s.Addrs.Gateway, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// envoyStat reads one of Envoy's counters or gauges from its admin.
func (e *env) envoyStat(t *testing.T, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + e.s.Addrs.EnvoyAdmin + "/stats?filter=" + url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
