package e2e_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/stack"
)

// xdsTiersTOML adds the tiers of TestXDSChangesReachARunningEnvoy: the
// steady stream's tenant runs in tier bulk, far under its limit; the
// probe tier's limit is the one the test lowers.
const xdsTiersTOML = `
[ratelimit.tiers.bulk]
tenant = { requests = 1000000, unit = "minute" }
[ratelimit.tiers.probe]
tenant = { requests = 1000, unit = "minute" }
`

// streamClients is how many clients send the steady stream, each a request
// every streamEvery: modest, because the machine's two cores are shared.
const (
	streamClients = 4
	streamEvery   = 50 * time.Millisecond
	// settleAnswers is how many answers each phase collects after Envoy
	// shows its change applied, before the next change.
	settleAnswers = 60
)

// TestXDSChangesReachARunningEnvoy runs the stack with Envoy following
// `fraise xds` (`fraise dev --xds`), sends a steady stream of GraphQL
// requests through it, and changes fraise.toml three times while the
// stream runs: a new rate limit (the limiter's tiers, and the rate-limit
// filter's timeout in Envoy's listener), a new graphql route timeout, and
// a rotated gateway certificate (what Envoy presents to the core and
// extauthz, in new files); then it renews that certificate in place,
// fraise.toml untouched. Each change is shown applied by the same Envoy
// process, and every answer of the stream is counted: any that is not a
// 200 fails the test. The counts are printed.
func TestXDSChangesReachARunningEnvoy(t *testing.T) {
	t.Parallel()
	if raceDetector {
		t.Skip("envoyproxy/ratelimit races with itself on a limits reload (race_on_test.go); tested without -race")
	}
	s := stack.StartWith(t, stack.Options{XDS: true, TOML: xdsTiersTOML})
	if s.Addrs.XDS == "" || s.Addrs.EnvoyAdmin == "" || s.Addrs.EnvoyPid == 0 {
		t.Fatalf("ready file: got xds %q, envoy admin %q, pid %d; want all three", s.Addrs.XDS, s.Addrs.EnvoyAdmin, s.Addrs.EnvoyPid)
	}
	started := envoyUptime(t, s)
	startedAt := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fraise dev's log (%d bytes), without the access log of 200s:\n%s", len(s.Logs()), tail(s.Logs(), 60))
		}
	})
	bulk := strings.TrimSpace(s.Run(t, "token", "--dir", s.Dir, "--tenant", demo.TenantAcme, "--subject", "alice", "--roles", "viewer", "--tier", "bulk"))
	probe := strings.TrimSpace(s.Run(t, "token", "--dir", s.Dir, "--tenant", demo.TenantGlobex, "--subject", "carol", "--roles", "viewer", "--tier", "probe"))

	st := startStream(t, s, bulk)
	st.waitAnswers(t, settleAnswers)

	probeStatus := func() int {
		t.Helper()
		status, _, _ := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", map[string]string{"Authorization": "Bearer " + probe})
		return status
	}
	for i := 0; i < 8; i++ {
		if got := probeStatus(); got != http.StatusOK {
			t.Fatalf("probe tier, request %d before the change: got %d, want 200 (limit 1000 a minute)", i, got)
		}
	}

	// 1. A new rate limit: the probe tier's limit falls to 5 a minute, and
	// Envoy's rate-limit filter gets a longer timeout (a change to the
	// listener itself, which Envoy updates in place).
	before := readEnvoyStats(t, s)
	st.next(t, "rate limit")
	editConfig(t, s, func(c string) string {
		c = strings.Replace(c, "[ratelimit.tiers.probe]\ntenant = { requests = 1000,", "[ratelimit.tiers.probe]\ntenant = { requests = 5,", 1)
		return strings.Replace(c, "[ratelimit]\n", "[ratelimit]\ntimeout = \"150ms\"\n", 1)
	})
	waitFor(t, "Envoy's rate-limit filter timeout 0.150s", func() (bool, string) {
		got := rateLimitTimeout(t, s)
		return got == "0.150s", "timeout " + got
	})
	waitFor(t, "the probe tier refused at its new limit", func() (bool, string) {
		got := probeStatus()
		return got == http.StatusTooManyRequests, "status " + strconv.Itoa(got)
	})
	st.waitAnswers(t, settleAnswers)
	after := readEnvoyStats(t, s)
	t.Logf("rate limit: listener_modified %s -> %s, in place %s -> %s, lds version %s -> %s",
		before["listener_manager.listener_modified"], after["listener_manager.listener_modified"],
		before["listener_manager.listener_in_place_updated"], after["listener_manager.listener_in_place_updated"],
		before["listener_manager.lds.version_text"], after["listener_manager.lds.version_text"])
	if after.n("listener_manager.listener_modified") != before.n("listener_manager.listener_modified")+1 {
		t.Errorf("listener_modified: got %s -> %s, want one listener update", before["listener_manager.listener_modified"], after["listener_manager.listener_modified"])
	}

	// 2. A new route timeout.
	before = after
	st.next(t, "route timeout")
	editConfig(t, s, func(c string) string {
		return strings.Replace(c, "[gateway]\n", "[gateway]\ngraphql_timeout = \"12s\"\n", 1)
	})
	waitFor(t, "the graphql route's timeout 12s", func() (bool, string) {
		got := graphqlRouteTimeout(t, s)
		return got == "12s", "timeout " + got
	})
	st.waitAnswers(t, settleAnswers)
	after = readEnvoyStats(t, s)
	t.Logf("route timeout: rds version %s -> %s", before["http.ingress.rds.ingress.version_text"], after["http.ingress.rds.ingress.version_text"])
	for _, k := range []string{"listener_manager.listener_modified", "cluster_manager.cluster_modified"} {
		if after[k] != before[k] {
			t.Errorf("%s: got %s -> %s, want unchanged by a route change", k, before[k], after[k])
		}
	}

	// 3. A rotated gateway certificate: same CA, same SAN, a new key and
	// serial, in new files.
	certs := devcerts.FilesIn(filepath.Join(s.Dir, "certs"))
	newCert, newKey, serial := mustReissueGatewayCert(t, certs, filepath.Join(s.Dir, "certs-rotated"))
	before = after
	st.next(t, "certificate")
	editConfig(t, s, func(c string) string {
		c = strings.Replace(c, strconv.Quote(certs.GatewayCert), strconv.Quote(newCert), 1)
		return strings.Replace(c, strconv.Quote(certs.GatewayKey), strconv.Quote(newKey), 1)
	})
	oldSerial := certSerial(t, certs.GatewayCert)
	// Every cluster that speaks TLS presents the new certificate, but the
	// bootstrap's own xds cluster, static, which keeps the old one.
	waitFor(t, "Envoy presenting the new gateway certificate", func() (bool, string) {
		got := envoyCertSerials(t, s)
		return got[serial] > 0 && got[oldSerial] == 1, fmt.Sprintf("TLS contexts by serial %v, want %s in some and %s in one", got, serial, oldSerial)
	})
	st.waitAnswers(t, settleAnswers)
	after = readEnvoyStats(t, s)
	t.Logf("certificate: cluster_modified %s -> %s, secret updates %s -> %s",
		before["cluster_manager.cluster_modified"], after["cluster_manager.cluster_modified"],
		before["sds.upstream_certificate.update_success"], after["sds.upstream_certificate.update_success"])
	// The certificate is a secret of its own (SDS): Envoy updates it in
	// place and replaces no cluster, which would reset the ext_authz
	// checks in flight on it.
	for _, k := range []string{"listener_manager.listener_modified", "cluster_manager.cluster_modified"} {
		if after[k] != before[k] {
			t.Errorf("%s: got %s -> %s, want unchanged by a rotated upstream certificate", k, before[k], after[k])
		}
	}

	// 4. The same files renewed in place, as cert-manager or a mounted
	// Secret does, fraise.toml untouched: Envoy watches the files an SDS
	// secret names and reloads them.
	rotatedDir := filepath.Dir(newCert)
	before = after
	st.next(t, "cert in place")
	_, _, serial3 := mustReissueGatewayCert(t, certs, rotatedDir)
	waitFor(t, "Envoy presenting the certificate renewed in place", func() (bool, string) {
		got := envoyCertSerials(t, s)
		return got[serial3] > 0 && got[serial] == 0, fmt.Sprintf("TLS contexts by serial %v, want %s in some and %s in none", got, serial3, serial)
	})
	st.waitAnswers(t, settleAnswers)
	after = readEnvoyStats(t, s)
	t.Logf("certificate in place: cluster_modified %s -> %s, failed reloads %s -> %s",
		before["cluster_manager.cluster_modified"], after["cluster_manager.cluster_modified"],
		before["sds.upstream_certificate.key_rotation_failed"], after["sds.upstream_certificate.key_rotation_failed"])
	for _, k := range []string{"listener_manager.listener_modified", "cluster_manager.cluster_modified"} {
		if after[k] != before[k] {
			t.Errorf("%s: got %s -> %s, want unchanged by a certificate renewed in place", k, before[k], after[k])
		}
	}

	st.finish(t)

	// The same Envoy served throughout: its pid lives, it never restarted
	// (no hot restart, its uptime spans the whole test).
	if err := syscall.Kill(s.Addrs.EnvoyPid, 0); err != nil {
		t.Errorf("Envoy pid %d: %v, want the same process running", s.Addrs.EnvoyPid, err)
	}
	if got := readEnvoyStats(t, s); got["server.hot_restart_epoch"] != "0" {
		t.Errorf("hot_restart_epoch: got %s, want 0", got["server.hot_restart_epoch"])
	}
	if up, elapsed := envoyUptime(t, s), time.Since(startedAt); up-started < elapsed-2*time.Second {
		t.Errorf("Envoy's uptime grew %s over %s: it restarted", up-started, elapsed)
	}
}

// stream is a steady stream of GraphQL requests through Envoy, its answers
// counted by phase.
type stream struct {
	// title heads the printed counts.
	title  string
	phase  atomic.Int32
	counts [16]struct{ sent, ok, failed atomic.Int64 }
	stop   chan struct{}
	wg     sync.WaitGroup
	names  []string // by phase; only the test's goroutine touches it

	mu       sync.Mutex
	failures []streamFailure
}

type streamFailure struct {
	phase int32
	err   error
}

func startStream(tb testing.TB, s *stack.Stack, token string) *stream {
	tb.Helper()
	st := &stream{title: "xDS changes under a steady stream", names: []string{"steady"}, stop: make(chan struct{})}
	body, _ := json.Marshal(map[string]any{"query": "{ users { id name } }"})
	for i := 0; i < streamClients; i++ {
		// Half the clients keep one HTTP/2 connection (it stays on the
		// filter chain it was accepted on, draining after a listener
		// change); the other half open a new HTTP/1.1 connection for
		// every request, so some connections are accepted while Envoy
		// swaps its configuration.
		c := newClient(tb, s, i%2 == 1)
		st.wg.Go(func() {
			tick := time.NewTicker(streamEvery)
			defer tick.Stop()
			for {
				select {
				case <-st.stop:
					return
				case <-tick.C:
				}
				p := st.phase.Load()
				n := &st.counts[p]
				n.sent.Add(1)
				if err := gatewayPost(c, s.Addrs.Gateway, token, body, hasAlice); err != nil {
					n.failed.Add(1)
					st.mu.Lock()
					st.failures = append(st.failures, streamFailure{p, err})
					st.mu.Unlock()
					continue
				}
				n.ok.Add(1)
			}
		})
	}
	tb.Cleanup(st.halt)
	return st
}

// gatewayPost sends one GraphQL request through the gateway and reports
// anything but a 200 without errors whose answer accept takes as an error.
func gatewayPost(c *http.Client, gateway, token string, body []byte, accept func(stack.Response) bool) error {
	req, err := http.NewRequest(http.MethodPost, "https://"+gateway+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("status %d, body: %w", resp.StatusCode, err)
	}
	var g stack.Response
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &g) != nil || len(g.Errors) > 0 || !accept(g) {
		return fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	return nil
}

// hasAlice accepts an answer with Acme's users.
func hasAlice(g stack.Response) bool { return bytes.Contains(g.Data, []byte("Alice")) }

func (st *stream) halt() {
	select {
	case <-st.stop:
	default:
		close(st.stop)
	}
	st.wg.Wait()
}

// next starts counting answers under a new phase.
func (st *stream) next(tb testing.TB, name string) {
	tb.Helper()
	st.names = append(st.names, name)
	if len(st.names) > len(st.counts) {
		tb.Fatalf("more than %d phases", len(st.counts))
	}
	st.phase.Store(int32(len(st.names) - 1))
}

// waitAnswers waits until the current phase has n more answers.
func (st *stream) waitAnswers(tb testing.TB, n int64) {
	tb.Helper()
	c := &st.counts[st.phase.Load()]
	want := c.ok.Load() + c.failed.Load() + n
	waitFor(tb, fmt.Sprintf("%d more answers", n), func() (bool, string) {
		got := c.ok.Load() + c.failed.Load()
		return got >= want, fmt.Sprintf("%d answers, want %d", got, want)
	})
}

// finish stops the stream, prints the counts and fails on any failure.
func (st *stream) finish(tb testing.TB) {
	tb.Helper()
	st.halt()
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d clients, a request every %s each; half on one HTTP/2 connection, half on a new HTTP/1.1 connection per request):\n", st.title, streamClients, streamEvery)
	fmt.Fprintf(&b, "  %-18s %6s %6s %6s\n", "phase", "sent", "ok", "failed")
	var sent, ok, failed int64
	for i, name := range st.names {
		c := &st.counts[i]
		fmt.Fprintf(&b, "  %-18s %6d %6d %6d\n", name, c.sent.Load(), c.ok.Load(), c.failed.Load())
		sent, ok, failed = sent+c.sent.Load(), ok+c.ok.Load(), failed+c.failed.Load()
	}
	fmt.Fprintf(&b, "  %-18s %6d %6d %6d\n", "total", sent, ok, failed)
	tb.Log(b.String())
	fmt.Print(b.String())
	if failed > 0 {
		var first []string
		for _, f := range st.failures[:min(len(st.failures), 5)] {
			first = append(first, fmt.Sprintf("%s: %v", st.names[f.phase], f.err))
		}
		tb.Errorf("%d of %d requests failed, want 0; the first: %s", failed, sent, strings.Join(first, "\n"))
	}
}

// waitFor polls cond until it holds, failing after 30s with its last word.
func waitFor(tb testing.TB, what string, cond func() (bool, string)) {
	tb.Helper()
	var ok bool
	var last string
	if !await.WithinEvery(30*time.Second, 100*time.Millisecond, func() bool { ok, last = cond(); return ok }) {
		tb.Fatalf("%s: not within 30s (last: %s)", what, last)
	}
}

// editConfig rewrites fraise.toml with edit, atomically: the watcher never
// reads half a file. It fails when edit changes nothing.
func editConfig(tb testing.TB, s *stack.Stack, edit func(string) string) {
	tb.Helper()
	old, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := edit(string(old))
	if cfg == string(old) {
		tb.Fatal("the configuration edit changed nothing")
	}
	tmp := s.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, s.ConfigPath); err != nil {
		tb.Fatal(err)
	}
}

// newClient returns a client of its own (its own connections) presenting
// the development client certificate: over one HTTP/2 connection, or with
// a new HTTP/1.1 connection per request.
func newClient(tb testing.TB, s *stack.Stack, connPerRequest bool) *http.Client {
	tb.Helper()
	tr := &http.Transport{TLSClientConfig: s.TLSConfig(tb, true), ForceAttemptHTTP2: true}
	if connPerRequest {
		tr.ForceAttemptHTTP2, tr.DisableKeepAlives = false, true
		// A non-nil empty map turns HTTP/2 off.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	tb.Cleanup(c.CloseIdleConnections)
	return c
}

// envoyAdmin GETs path from Envoy's admin interface.
func envoyAdmin(tb testing.TB, s *stack.Stack, path string) []byte {
	tb.Helper()
	resp, err := http.Get("http://" + s.Addrs.EnvoyAdmin + path)
	if err != nil {
		tb.Fatalf("Envoy admin %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("Envoy admin %s: status %d, %v: %s", path, resp.StatusCode, err, b)
	}
	return b
}

type envoyStats map[string]string

func (m envoyStats) n(k string) int {
	v, _ := strconv.Atoi(m[k])
	return v
}

// envoyStats returns the counters and text readouts that show how Envoy
// took configuration updates.
func readEnvoyStats(tb testing.TB, s *stack.Stack) envoyStats {
	tb.Helper()
	filter := `^(server\.(hot_restart_epoch|uptime)|listener_manager\.(listener_modified|listener_in_place_updated|total_filter_chains_draining|total_listeners_draining|lds\.(update_success|update_rejected|version_text))|cluster_manager\.(cluster_modified|cds\.(update_success|update_rejected|version_text))|http\.ingress\.rds\.ingress\.(update_success|update_rejected|version_text)|sds\.upstream_certificate\.(update_success|key_rotation_failed))$`
	m := envoyStats{}
	for _, l := range strings.Split(string(envoyAdmin(tb, s, "/stats?filter="+url.QueryEscape(filter))), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = strings.Trim(v, `"`)
		}
	}
	return m
}

// envoyUptime is Envoy's uptime in its current epoch (/server_info).
func envoyUptime(tb testing.TB, s *stack.Stack) time.Duration {
	tb.Helper()
	var info struct {
		Uptime string `json:"uptime_current_epoch"`
	}
	if err := json.Unmarshal(envoyAdmin(tb, s, "/server_info"), &info); err != nil {
		tb.Fatal(err)
	}
	d, err := time.ParseDuration(info.Uptime)
	if err != nil {
		tb.Fatalf("uptime %q: %v", info.Uptime, err)
	}
	return d
}

// graphqlRouteTimeout is the graphql route's timeout in the route
// configuration Envoy runs.
func graphqlRouteTimeout(tb testing.TB, s *stack.Stack) string {
	tb.Helper()
	var dump struct {
		Configs []struct {
			RouteConfig struct {
				VirtualHosts []struct {
					Routes []struct {
						Name  string `json:"name"`
						Route struct {
							Timeout string `json:"timeout"`
						} `json:"route"`
					} `json:"routes"`
				} `json:"virtual_hosts"`
			} `json:"route_config"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(envoyAdmin(tb, s, "/config_dump?resource=dynamic_route_configs"), &dump); err != nil {
		tb.Fatal(err)
	}
	for _, c := range dump.Configs {
		for _, vh := range c.RouteConfig.VirtualHosts {
			for _, r := range vh.Routes {
				if r.Name == "graphql" {
					return r.Route.Timeout
				}
			}
		}
	}
	return ""
}

// rateLimitTimeout is the rate-limit filter's timeout in the active
// listener Envoy runs.
func rateLimitTimeout(tb testing.TB, s *stack.Stack) string {
	tb.Helper()
	var dump struct {
		Configs []struct {
			ActiveState struct {
				Listener struct {
					FilterChains []struct {
						Filters []struct {
							TypedConfig struct {
								HTTPFilters []struct {
									Name        string `json:"name"`
									TypedConfig struct {
										Timeout string `json:"timeout"`
									} `json:"typed_config"`
								} `json:"http_filters"`
							} `json:"typed_config"`
						} `json:"filters"`
					} `json:"filter_chains"`
				} `json:"listener"`
			} `json:"active_state"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(envoyAdmin(tb, s, "/config_dump?resource=dynamic_listeners"), &dump); err != nil {
		tb.Fatal(err)
	}
	for _, c := range dump.Configs {
		for _, fc := range c.ActiveState.Listener.FilterChains {
			for _, f := range fc.Filters {
				for _, h := range f.TypedConfig.HTTPFilters {
					if h.Name == "envoy.filters.http.ratelimit" {
						return h.TypedConfig.Timeout
					}
				}
			}
		}
	}
	return ""
}

// envoyCertSerials counts the TLS contexts Envoy holds (/certs) by the
// serial number of their certificate (lower-case hex, no leading zeros).
func envoyCertSerials(tb testing.TB, s *stack.Stack) map[string]int {
	tb.Helper()
	var certs struct {
		Certificates []struct {
			CertChain []struct {
				Path   string `json:"path"`
				Serial string `json:"serial_number"`
			} `json:"cert_chain"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(envoyAdmin(tb, s, "/certs"), &certs); err != nil {
		tb.Fatal(err)
	}
	serials := map[string]int{}
	for _, c := range certs.Certificates {
		for _, cc := range c.CertChain {
			serials[strings.TrimLeft(strings.ToLower(cc.Serial), "0")]++
		}
	}
	return serials
}

// certSerial is the serial of the certificate in the PEM file at path, as
// envoyCertSerials spells it.
func certSerial(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return cert.SerialNumber.Text(16)
}

// mustReissueGatewayCert signs a new gateway certificate with the stack's
// CA (the same subject and SAN, a new key and serial) into dir's
// gateway.pem and gateway-key.pem, each replaced by a rename (the key
// first), and returns the files and the serial as envoyCertSerials spells
// it.
func mustReissueGatewayCert(tb testing.TB, certs devcerts.Files, dir string) (cert, key, serial string) {
	tb.Helper()
	readPEM := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			tb.Fatalf("%s: no PEM block", path)
		}
		return blk.Bytes
	}
	ca, err := x509.ParseCertificate(readPEM(certs.CACert))
	if err != nil {
		tb.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(readPEM(certs.CAKey))
	if err != nil {
		tb.Fatal(err)
	}
	old, err := x509.ParseCertificate(readPEM(certs.GatewayCert))
	if err != nil {
		tb.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: old.Subject, DNSNames: old.DNSNames,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: old.NotAfter,
		KeyUsage: old.KeyUsage, ExtKeyUsage: old.ExtKeyUsage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	cert, key = filepath.Join(dir, "gateway.pem"), filepath.Join(dir, "gateway-key.pem")
	replace := func(path string, b []byte, mode os.FileMode) {
		tmp := filepath.Join(dir, ".new-"+filepath.Base(path))
		if err := os.WriteFile(tmp, b, mode); err != nil {
			tb.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			tb.Fatal(err)
		}
	}
	replace(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	replace(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		tb.Fatal(err)
	}
	return cert, key, sn.Text(16)
}

// tail returns the last n lines of the log s but Envoy's access log
// lines of 200s.
func tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if !strings.HasPrefix(l, "envoy: {") || !strings.Contains(l, `"status":200`) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
