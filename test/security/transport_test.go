package security_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/test/harness"
)

var transportAttacks = []attack{
	{
		name: "tls-without-client-certificate", class: classTransport,
		does: "opens TLS to the ingress without a client certificate and sends a query with a valid token",
		want: "the handshake is refused: no HTTP exchange at all",
		run: func(t *testing.T, e *env) string {
			return e.handshakeRefused(t, e.s.Addrs.Gateway, nil)
		},
	},
	{
		name: "tls-untrusted-client-certificate", class: classTransport,
		does: "presents a client certificate from a CA of its own to the ingress",
		want: "the handshake is refused",
		run: func(t *testing.T, e *env) string {
			return e.handshakeRefused(t, e.s.Addrs.Gateway, []tls.Certificate{selfSigned(t, "client.evil.test")})
		},
	},
	{
		name: "plaintext-to-ingress", class: classTransport,
		does: "sends a plain-text HTTP request to the ingress's TLS port",
		want: "no HTTP answer: the connection closes",
		run:  func(t *testing.T, e *env) string { return plaintextHTTP(t, e.s.Addrs.Gateway, false) },
	},
	{
		name: "core-http-end-user-certificate", class: classTransport,
		does: "goes around Envoy to the server's GraphQL port with an end user's certificate (from the stack's own CA)",
		want: "the handshake is refused: the server accepts only the gateway's certificate, pinned by SAN",
		run: func(t *testing.T, e *env) string {
			return e.handshakeRefused(t, e.s.Addrs.CoreHTTP, []tls.Certificate{e.s.ClientCertificate(t)})
		},
	},
	{
		name: "core-http-without-certificate", class: classTransport,
		does: "goes around Envoy to the server's GraphQL port without a client certificate",
		want: "the handshake is refused",
		run:  func(t *testing.T, e *env) string { return e.handshakeRefused(t, e.s.Addrs.CoreHTTP, nil) },
	},
	{
		name: "core-http-forged-gateway-certificate", class: classTransport,
		does: "presents the server a self-signed certificate naming the gateway's SAN",
		want: "the handshake is refused: the SAN is pinned only on a certificate of the internal CA",
		run: func(t *testing.T, e *env) string {
			return e.handshakeRefused(t, e.s.Addrs.CoreHTTP, []tls.Certificate{selfSigned(t, gatewaySAN(t, e))})
		},
	},
	{
		name: "core-http-plaintext", class: classTransport,
		does: "sends a plain-text GraphQL request to the server's port",
		want: "no GraphQL answer (Go's TLS server answers 400 to plain HTTP)",
		run:  func(t *testing.T, e *env) string { return plaintextHTTP(t, e.s.Addrs.CoreHTTP, true) },
	},
	{
		name: "core-flight-end-user-certificate", class: classTransport,
		does: "goes around Envoy to the server's Flight port with an end user's certificate",
		want: "the call fails in the handshake",
		run: func(t *testing.T, e *env) string {
			c := e.s.TLSConfig(t, true) // the user's certificate, whatever the address
			return grpcRefused(t, e.s.Addrs.CoreFlight, credentials.NewTLS(c), flightCall)
		},
	},
	{
		name: "core-flight-plaintext", class: classTransport,
		does: "calls the server's Flight port over plain-text HTTP/2",
		want: "the call fails",
		run: func(t *testing.T, e *env) string {
			return grpcRefused(t, e.s.Addrs.CoreFlight, insecure.NewCredentials(), flightCall)
		},
	},
	{
		name: "extauthz-end-user-certificate", class: classTransport,
		does: "calls extauthz's Check directly with an end user's certificate, to get identity headers and an assertion minted",
		want: "the call fails in the handshake: extauthz accepts only the gateway's certificate",
		run: func(t *testing.T, e *env) string {
			return grpcRefused(t, e.s.Addrs.Authz, credentials.NewTLS(e.s.TLSConfig(t, true)), checkCall)
		},
	},
	{
		name: "extauthz-plaintext", class: classTransport,
		does: "calls extauthz's Check over plain-text HTTP/2",
		want: "the call fails",
		run: func(t *testing.T, e *env) string {
			return grpcRefused(t, e.s.Addrs.Authz, insecure.NewCredentials(), checkCall)
		},
	},
	{
		name: "ratelimit-end-user-certificate", class: classTransport,
		does: "calls the rate limiter directly with an end user's certificate (to read or spend other tenants' budgets)",
		want: "the call fails in the handshake: the limiter accepts the gateway's and the server's certificates only",
		run: func(t *testing.T, e *env) string {
			return grpcRefused(t, e.s.Addrs.RateLimit, credentials.NewTLS(e.s.TLSConfig(t, true)), rateLimitCall)
		},
	},
	{
		name: "ratelimit-plaintext", class: classTransport,
		does: "calls the rate limiter over plain-text HTTP/2",
		want: "the call fails",
		run: func(t *testing.T, e *env) string {
			return grpcRefused(t, e.s.Addrs.RateLimit, insecure.NewCredentials(), rateLimitCall)
		},
	},
	{
		name: "ratelimit-http-port-off", class: classTransport,
		does: "looks for the rate limiter's HTTP (/json) and debug ports, and any other listener, in the running stack",
		want: "none: the stack's process listens only on the ports its ready file names, Envoy only on the ingress and its loopback admin, and the configuration leaves both limiter ports off",
		run: func(t *testing.T, e *env) string {
			cfg, err := config.Load(e.s.ConfigPath, e.s.Getenv)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RateLimit.HTTPAddr != "" || cfg.RateLimit.DebugAddr != "" {
				t.Errorf("got ratelimit.http_addr %q, debug_addr %q, want both off by default", cfg.RateLimit.HTTPAddr, cfg.RateLimit.DebugAddr)
			}
			a := e.s.Addrs
			// The rate limiter's admin port serves health and metrics only
			// (no /json): it is named in the ready file as the others are.
			want := portsOf(t, a.CoreHTTP, a.CoreAdmin, a.CoreFlight, a.Authz, a.AuthzAdmin, a.RateLimit, a.RateLimitAdmin)
			got := listeningPorts(t, os.Getpid())
			if os.Getenv("CI") != "" || os.Getenv("FRAISE_HOLD_DEV_PORTS") != "" {
				// harness.Main holds the development ports in this process
				// (a limiter binding one of its defaults would then fail to
				// start, and the stack with it).
				got = slices.DeleteFunc(got, func(p int) bool { return slices.Contains(harness.DevPorts, p) })
			}
			if !slices.Equal(got, want) {
				t.Errorf("the stack's process listens on %v, want only %v (core, extauthz, rate limiter gRPC and admin)", got, want)
			}
			wantEnvoy := portsOf(t, a.Gateway, a.EnvoyAdmin)
			if got := listeningPorts(t, a.EnvoyPid); !slices.Equal(got, wantEnvoy) {
				t.Errorf("Envoy listens on %v, want only %v (ingress, admin)", got, wantEnvoy)
			}
			if host, _, _ := net.SplitHostPort(a.EnvoyAdmin); host != "127.0.0.1" {
				t.Errorf("Envoy's admin listens on %s, want loopback", a.EnvoyAdmin)
			}
			return fmt.Sprintf("no limiter HTTP or debug port; %d listeners in the stack's process, 2 in Envoy's, all named", len(want))
		},
	},
}

// handshakeRefused sends a query with a valid token to addr over TLS with
// certs and checks that no HTTP exchange happens.
func (e *env) handshakeRefused(t *testing.T, addr string, certs []tls.Certificate) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.s.CAPool(t), ServerName: "localhost", MinVersion: tls.VersionTLS12,
			// Presented whatever CAs the server names as acceptable: Go
			// would otherwise send no certificate the server's CAs did
			// not sign, and the attack would be one without a certificate.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &certs[0], nil
			}},
	}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/graphql", strings.NewReader(`{"query":"{ users { id email } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.token(t, acme, "alice", "admin"))
	resp, err := c.Do(req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("got status %d %s, want the TLS handshake refused", resp.StatusCode, b)
	}
	return "handshake refused (" + tlsReason(err) + ")"
}

// tlsReason shortens a client's TLS error for the report.
func tlsReason(err error) string {
	s := err.Error()
	for _, r := range []string{"certificate required", "bad certificate", "unknown certificate authority", "handshake failure", "connection reset", "broken pipe", "EOF"} {
		if strings.Contains(s, r) {
			return r
		}
	}
	return s
}

// plaintextHTTP writes a plain-text POST /graphql to addr and checks the
// answer is no HTTP answer at all or, where allowHTTP400, a 400.
func plaintextHTTP(t *testing.T, addr string, allow400 bool) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	body := `{"query":"{ users { id email } }"}`
	fmt.Fprintf(conn, "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\nx-fraise-tenant: %s\r\n\r\n%s", len(body), acme, body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "connection closed without an HTTP answer"
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !allow400 || resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), `"data"`) {
		t.Fatalf("got %d %q, want no HTTP answer", resp.StatusCode, b)
	}
	return "refused 400 (plain HTTP to a TLS port)"
}

// grpcRefused makes call to addr with creds and checks it fails.
func grpcRefused(t *testing.T, addr string, creds credentials.TransportCredentials, call func(context.Context, *grpc.ClientConn) error) string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = call(ctx, conn)
	if err == nil {
		t.Fatal("the call succeeded, want it refused")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("got %v after 10 s, want a prompt refusal", err)
	}
	return "call refused: " + codeOf(err).String() + " (" + tlsReason(err) + ")"
}

func flightCall(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := flight.NewFlightServiceClient(conn).GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"people", "users"}})
	return err
}

func checkCall(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{})
	return err
}

func rateLimitCall(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "fraise"})
	return err
}

func gatewaySAN(t *testing.T, e *env) string {
	t.Helper()
	cfg, err := config.Load(e.s.ConfigPath, e.s.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.TLS.GatewaySAN
}

func portsOf(t *testing.T, addrs ...string) []int {
	t.Helper()
	var ports []int
	for _, a := range addrs {
		if a == "" {
			continue
		}
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	slices.Sort(ports)
	return ports
}

// listeningPorts returns the TCP ports process pid listens on: the
// listening sockets of /proc/net/tcp{,6} among the process's descriptors.
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	byInode := map[string]int{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			p, _ := strconv.ParseInt(hexPort, 16, 32)
			byInode[fs[9]] = int(p)
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, fd := range fds {
		l, err := os.Readlink(dir + "/" + fd.Name())
		if err != nil {
			continue
		}
		inode, ok := strings.CutPrefix(l, "socket:[")
		if !ok {
			continue
		}
		if p, ok := byInode[strings.TrimSuffix(inode, "]")]; ok && !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	slices.Sort(ports)
	return ports
}
