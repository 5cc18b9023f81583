package loadgen_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/loadgen"
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
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done(): // the client left
			}
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
	client := loadgen.NewLeanClient(2)

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
		// Well before the 5 s answer, on however busy a machine.
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
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

// TestArrived shows that an answer is timed at its arrival on the socket,
// not at its read: a server that sends an answer early (before the request
// it answers) has it timed when it came, however long the client took to
// ask and read it.
func TestArrived(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	sent := make(chan time.Time, 3)
	secondRead := make(chan struct{}) // the client has the second answer
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		readRequest := func() {
			if req, err := http.ReadRequest(r); err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
			}
		}
		for range 2 {
			readRequest()
			sent <- time.Now()
			_, _ = io.WriteString(c, answer)
		}
		<-secondRead // the third answer must not share a read with the second
		sent <- time.Now()
		_, _ = io.WriteString(c, answer) // before the third request
		readRequest()
		readRequest() // until the client leaves
	}()
	client := loadgen.NewLeanClient(1)
	get := func() (at, t0 time.Time) {
		t.Helper()
		req, _ := http.NewRequestWithContext(loadgen.WithArrival(context.Background(), &at), http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		t0 = time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return at, t0
	}

	// The kernel turns receive timestamps on a moment after the first
	// socket asks for them: the first answer may come unstamped.
	get()
	<-sent
	time.Sleep(20 * time.Millisecond) // that moment: the kernel announces no event
	at, t0 := get()
	close(secondRead)
	second := <-sent
	if at.Before(t0) || at.Before(second) || at.After(time.Now()) {
		t.Fatalf("second answer: arrived %v, want between its sending %v and now", at, second)
	}
	time.Sleep(500 * time.Millisecond) // the answer's age in the socket is what is measured
	at, t0 = get()
	third := <-sent
	if at.Before(third) || t0.Sub(at) < 200*time.Millisecond {
		t.Fatalf("third answer: arrived %v, want at its sending %v, some 450 ms before it was asked for at %v", at, third, t0)
	}
}

// TestLeanTransportTLS checks https with a client certificate: requests and
// answers arrive whole over one kept-alive TLS connection that presents
// the certificate, answers are timed at their arrival on the socket, and a
// plain-text connection never carries an https request.
func TestLeanTransportTLS(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.TLS == nil || len(r.TLS.PeerCertificates) != 1 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(b)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	client := &http.Client{Transport: &loadgen.LeanTransport{MaxConns: 2, TLS: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{mustClientCert(t)},
	}}}

	var at, t0 time.Time
	for i := range 3 {
		body := strings.Repeat("x", 1000*(i+1))
		req, _ := http.NewRequestWithContext(loadgen.WithArrival(context.Background(), &at), http.MethodPost, srv.URL+"/echo", strings.NewReader(body))
		t0 = time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != body {
			t.Fatalf("request %d: got %d and %d bytes (%.80q), want 200 and the %d bytes sent", i, resp.StatusCode, len(got), got, len(body))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("three requests opened %d connections, want 1 kept alive", n)
	}
	// As over plain text, the first answers may come unstamped; the last
	// has its arrival on the socket.
	if runtime.GOOS == "linux" && (at.Before(t0) || at.After(time.Now())) {
		t.Fatalf("last answer: arrived %v, want between its sending %v and now", at, t0)
	}

	// The same host in plain text gets a connection of its own, not the
	// idle TLS one (on which the server would answer 200).
	req, _ := http.NewRequest(http.MethodPost, strings.Replace(srv.URL, "https://", "http://", 1)+"/echo", strings.NewReader("x"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || conns.Load() != 2 {
		t.Fatalf("plain text to the TLS port: got %d on %d connections in all, want net/http's 400 for a client not speaking TLS, on a second connection",
			resp.StatusCode, conns.Load())
	}
}

// mustClientCert returns a self-signed client certificate.
func mustClientCert(tb testing.TB) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
