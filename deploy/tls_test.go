package deploy_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/envoy"
)

// The TLS of every hop, as each deployment wires it: who reads which
// certificate is in reads (k8s_test.go); this file holds what the
// deployments share about ports and Envoy.

// tlsListens returns the listen keys of the process whose listeners speak
// TLS only: nothing without a client certificate (or, for the JWKS port, a
// TLS client) gets an answer there, the kubelet's probes included.
func tlsListens(cmd string, c config.Config) map[string]bool {
	switch cmd {
	case "serve":
		if c.Server.TLS {
			return map[string]bool{"server.http_addr": true, "server.flight_addr": true}
		}
	case "authz":
		return map[string]bool{"authz.grpc_addr": true, "authz.jwks_addr": true}
	case "ratelimit":
		return map[string]bool{"ratelimit.grpc_addr": true}
	case "xds":
		return map[string]bool{"xds.grpc_addr": true}
	case "envoy":
		return map[string]bool{"gateway.listen_addr": true}
	}
	return nil
}

// adminKey is the process's HTTP admin port (/healthz, /readyz, /metrics),
// if it has one.
func adminKey(cmd string) string {
	return map[string]string{"serve": "server.admin_addr", "authz": "authz.admin_addr"}[cmd]
}

// operatorPorts returns the process's operator ports, by config key: ports
// that answer without authentication and change state or show internals
// (the rate limiter's POST /json spends any tenant's limits, its debug
// port profiles the process, Envoy's admin port reconfigures and stops
// Envoy). The admin ports of the core and extauthz serve health, metrics
// and public keys only, and are not among them.
func operatorPorts(cmd string, c config.Config) map[string]string {
	switch cmd {
	case "ratelimit":
		return map[string]string{"ratelimit.http_addr": c.RateLimit.HTTPAddr, "ratelimit.debug_addr": c.RateLimit.DebugAddr}
	case "envoy":
		return map[string]string{"gateway.admin_addr": c.Gateway.AdminAddr}
	}
	return nil
}

// checkOperatorPorts fails when the process's configuration enables an
// operator port anywhere but loopback.
func checkOperatorPorts(tb testing.TB, where, cmd string, c config.Config) {
	tb.Helper()
	for key, addr := range operatorPorts(cmd, c) {
		if addr == "" {
			continue
		}
		if host, _ := portOf(tb, key, addr); !isLoopback(host) {
			tb.Errorf("%s: %s = %q: an operator port listens beyond loopback", where, key, addr)
		}
	}
}

func TestCheckOperatorPortsRejects(t *testing.T) {
	tests := []struct {
		name, cmd string
		set       func(*config.Config)
	}{
		{"rate limiter HTTP on every interface", "ratelimit", func(c *config.Config) { c.RateLimit.HTTPAddr = "0.0.0.0:8082" }},
		{"rate limiter debug on a pod address", "ratelimit", func(c *config.Config) { c.RateLimit.DebugAddr = "10.0.0.7:6070" }},
		{"Envoy admin on every interface", "envoy", func(c *config.Config) { c.Gateway.AdminAddr = "0.0.0.0:9901" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.set(&c)
			ft := &fakeTB{TB: t}
			checkOperatorPorts(ft, "x", tt.cmd, c)
			if !ft.failed {
				t.Errorf("checkOperatorPorts(%s): got no failure, want one", tt.name)
			}
		})
	}
	ft := &fakeTB{TB: t}
	c := config.Default()
	c.RateLimit.HTTPAddr, c.RateLimit.DebugAddr = "127.0.0.1:8082", "[::1]:6070"
	if checkOperatorPorts(ft, "x", "ratelimit", c); ft.failed {
		t.Error("checkOperatorPorts(loopback): got a failure, want none")
	}
}

// mustGenerateBootstrap runs `fraise envoy bootstrap --config file` with
// getenv as the process environment and returns what it writes to flag
// (--out: the static bootstrap, holding the listener and clusters `fraise
// xds` serves for the same configuration; --xds-out: the xDS bootstrap).
func mustGenerateBootstrap(tb testing.TB, file string, getenv func(string) string, flag string) []byte {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "bootstrap.yaml")
	if err := cli.Run(context.Background(), []string{"envoy", "bootstrap", "--config", file, flag, out}, getenv, io.Discard, io.Discard); err != nil {
		tb.Fatalf("fraise envoy bootstrap --config %s %s: %v", file, flag, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// checkBootstrapCurrent fails when the checked-in bootstrap is not what
// `make generate` writes from file.
func checkBootstrapCurrent(t *testing.T, checkedIn, file string) {
	t.Helper()
	got, err := os.ReadFile(checkedIn)
	if err != nil {
		t.Fatalf("%v (run make generate)", err)
	}
	if want := mustGenerateBootstrap(t, file, func(string) string { return "" }, "--xds-out"); !bytes.Equal(got, want) {
		t.Errorf("deploy/%s is not what `fraise envoy bootstrap --config deploy/%s --xds-out` writes: run make generate", checkedIn, file)
	}
}

// checkEnvoyTLS checks the Envoy side of every hop: the xDS bootstrap a
// deployment runs presents the gateway certificate to the xDS server, and
// the configuration `fraise xds` serves (served: the static bootstrap of
// the same fraise.toml, built by the same envoy.Build) presents it to the
// core, extauthz and the rate limiter, each verified against tls.ca for
// tls.server_name; its listener presents tls.server_cert and requires a
// client certificate from tls.ca; its admin port stays on loopback.
func checkEnvoyTLS(t *testing.T, where string, xdsBootstrap, served []byte, c config.Config) {
	t.Helper()
	boot, err := envoy.ParseBootstrapYAML(xdsBootstrap)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	st, err := envoy.ParseBootstrapYAML(served)
	if err != nil {
		t.Fatalf("%s: served configuration: %v", where, err)
	}
	for _, b := range []*bootstrapv3.Bootstrap{boot, st} {
		if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); !isLoopback(a) {
			t.Errorf("%s: Envoy's admin interface listens on %q, beyond loopback", where, a)
		}
	}
	want := map[string]bool{envoy.ClusterXDS: true}
	for _, err := range upstreamTLSErrors(boot.GetStaticResources().GetClusters(), want, c) {
		t.Errorf("%s: bootstrap: %v", where, err)
	}
	want = map[string]bool{envoy.ClusterCoreHTTP: true, envoy.ClusterAuthz: true, envoy.ClusterRateLimit: true}
	if c.Server.FlightAddr != "" {
		want[envoy.ClusterCoreFlight] = true
	}
	for _, err := range upstreamTLSErrors(st.GetStaticResources().GetClusters(), want, c) {
		t.Errorf("%s: served by xds: %v", where, err)
	}
	ls := st.GetStaticResources().GetListeners()
	if len(ls) != 1 || len(ls[0].GetFilterChains()) != 1 {
		t.Fatalf("%s: served by xds: want one listener with one filter chain", where)
	}
	var d tlsv3.DownstreamTlsContext
	if err := ls[0].GetFilterChains()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&d); err != nil {
		t.Fatalf("%s: the listener speaks no TLS: %v", where, err)
	}
	ctc := d.GetCommonTlsContext()
	if !d.GetRequireClientCertificate().GetValue() || ctc.GetValidationContext().GetTrustedCa().GetFilename() != c.TLS.CA {
		t.Errorf("%s: the listener must require client certificates from tls.ca %s", where, c.TLS.CA)
	}
	if tc := ctc.GetTlsCertificates(); len(tc) != 1 || tc[0].GetCertificateChain().GetFilename() != c.TLS.ServerCert || tc[0].GetPrivateKey().GetFilename() != c.TLS.ServerKey {
		t.Errorf("%s: the listener must present tls.server_cert %s", where, c.TLS.ServerCert)
	}
}

// upstreamTLSErrors checks that each cluster named in want is among
// clusters and presents the gateway certificate, verifying the upstream's
// against tls.ca for tls.server_name.
func upstreamTLSErrors(clusters []*clusterv3.Cluster, want map[string]bool, c config.Config) []error {
	var errs []error
	seen := map[string]bool{}
	for _, cl := range clusters {
		if !want[cl.GetName()] {
			continue
		}
		seen[cl.GetName()] = true
		if err := checkUpstreamTLS(cl.GetTransportSocket(), c); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", cl.GetName(), err))
		}
	}
	for _, name := range sortedKeys(want) {
		if !seen[name] {
			errs = append(errs, fmt.Errorf("no cluster %s", name))
		}
	}
	return errs
}

func checkUpstreamTLS(ts *corev3.TransportSocket, c config.Config) error {
	var u tlsv3.UpstreamTlsContext
	if ts == nil || ts.GetTypedConfig().UnmarshalTo(&u) != nil {
		return fmt.Errorf("speaks no TLS")
	}
	ctc := u.GetCommonTlsContext()
	tc := ctc.GetTlsCertificates()
	if len(tc) != 1 || tc[0].GetCertificateChain().GetFilename() != c.TLS.GatewayCert || tc[0].GetPrivateKey().GetFilename() != c.TLS.GatewayKey {
		return fmt.Errorf("presents %v, want the gateway certificate tls.gateway_cert %s and its key", tc, c.TLS.GatewayCert)
	}
	vc := ctc.GetValidationContext()
	if got := vc.GetTrustedCa().GetFilename(); got != c.TLS.CA {
		return fmt.Errorf("verifies against %q, want tls.ca %s", got, c.TLS.CA)
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	if len(sans) != 1 || sans[0].GetMatcher().GetExact() != c.TLS.ServerName || u.GetSni() != c.TLS.ServerName {
		return fmt.Errorf("expects SANs %v and SNI %q, want exactly tls.server_name %q", sans, u.GetSni(), c.TLS.ServerName)
	}
	return nil
}

func TestCheckUpstreamTLSRejects(t *testing.T) {
	c := config.Default()
	good := func() *tlsv3.UpstreamTlsContext {
		file := func(p string) *corev3.DataSource {
			return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
		}
		return &tlsv3.UpstreamTlsContext{Sni: c.TLS.ServerName, CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(c.TLS.GatewayCert), PrivateKey: file(c.TLS.GatewayKey)}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file(c.TLS.CA),
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
					Matcher: exact(c.TLS.ServerName)}},
			}},
		}}
	}
	tests := []struct {
		name   string
		mutate func(*tlsv3.UpstreamTlsContext)
		want   string
	}{
		{"valid", func(*tlsv3.UpstreamTlsContext) {}, ""},
		{"end user's certificate", func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsCertificates[0].CertificateChain.Specifier = &corev3.DataSource_Filename{Filename: c.TLS.ClientCert}
		}, "gateway certificate"},
		{"no client certificate", func(u *tlsv3.UpstreamTlsContext) { u.CommonTlsContext.TlsCertificates = nil }, "gateway certificate"},
		{"another CA", func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.GetValidationContext().TrustedCa.Specifier = &corev3.DataSource_Filename{Filename: "/etc/ssl/certs/ca-certificates.crt"}
		}, "tls.ca"},
		{"no SAN check", func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.GetValidationContext().MatchTypedSubjectAltNames = nil
		}, "tls.server_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := good()
			tt.mutate(u)
			ts, err := anyTransportSocket(u)
			if err != nil {
				t.Fatal(err)
			}
			err = checkUpstreamTLS(ts, c)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
	if err := checkUpstreamTLS(nil, c); err == nil {
		t.Error("got no error for a plaintext cluster, want one")
	}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func anyTransportSocket(m proto.Message) (*corev3.TransportSocket, error) {
	a, err := anypb.New(m)
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, err
}

// checkEnvoyImage fails unless image is the official Envoy image of the
// release the configuration is built for (envoy.Version).
func checkEnvoyImage(t *testing.T, where, image string) {
	t.Helper()
	if want := "envoyproxy/envoy:v" + envoy.Version; image != want {
		t.Errorf("%s: image %q, want %q: the configuration is built for Envoy %s", where, image, want, envoy.Version)
	}
}

// docSection returns the part of docs/deployment.md under the "## "
// heading title, up to the next one.
func docSection(tb testing.TB, title string) string {
	tb.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "deployment.md"))
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n## "+title+"\n")
	if !ok {
		tb.Fatalf("docs/deployment.md has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

var certsHosts = regexp.MustCompile("fraise certs [^`\n]*--hosts[ =]([^ `\n]+)")

// TestDevCertsFitDeployments runs the `fraise certs` command each
// deployment's section of docs/deployment.md gives and checks that the
// certificates it writes pass that deployment's pinning: the server
// certificate carries tls.server_name, the gateway's and the core's client
// certificates tls.gateway_san and tls.core_client_san, all signed by the
// CA written beside them.
func TestDevCertsFitDeployments(t *testing.T) {
	none := func(string) string { return "" }
	for _, d := range []struct{ section, toml string }{
		{"Kubernetes", filepath.Join(k8sDir, "fraise.toml")},
		{"Docker Compose", filepath.Join(composeDir, "fraise.toml")},
		{"systemd", filepath.Join(systemdDir, "fraise.toml")},
	} {
		t.Run(d.section, func(t *testing.T) {
			c := mustLoadConfig(t, d.toml, none)
			m := certsHosts.FindStringSubmatch(docSection(t, d.section))
			if m == nil {
				t.Fatalf("docs/deployment.md, %s: no `fraise certs --hosts ...` command", d.section)
			}
			dir := t.TempDir()
			if err := cli.Run(context.Background(), []string{"certs", "--dir", dir, "--hosts", m[1]}, none, io.Discard, io.Discard); err != nil {
				t.Fatal(err)
			}
			certs := filepath.Join(dir, "certs")
			pool := x509.NewCertPool()
			pool.AddCert(mustReadCert(t, filepath.Join(certs, "ca.pem")))
			for _, cc := range []struct {
				file, san string
				usage     x509.ExtKeyUsage
			}{
				{"server.pem", c.TLS.ServerName, x509.ExtKeyUsageServerAuth},
				{"gateway.pem", c.TLS.GatewaySAN, x509.ExtKeyUsageClientAuth},
				{"core-client.pem", c.TLS.CoreClientSAN, x509.ExtKeyUsageClientAuth},
			} {
				cert := mustReadCert(t, filepath.Join(certs, cc.file))
				opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{cc.usage}}
				if cc.usage == x509.ExtKeyUsageServerAuth {
					opts.DNSName = cc.san
				}
				if _, err := cert.Verify(opts); err != nil {
					t.Errorf("fraise certs --hosts %s: %s: %v", m[1], cc.file, err)
				}
				if !slices.Contains(cert.DNSNames, cc.san) {
					t.Errorf("fraise certs --hosts %s: %s names %v, want %q", m[1], cc.file, cert.DNSNames, cc.san)
				}
			}
		})
	}
}

func mustReadCert(tb testing.TB, file string) *x509.Certificate {
	tb.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		tb.Fatalf("%s: no PEM block", file)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestDeploymentsUseDataTLS: every deployment speaks TLS to PostgreSQL
// and Redis, verifying each against a CA it names and presenting a client
// certificate (the deployments' tests check each process has the files).
func TestDeploymentsUseDataTLS(t *testing.T) {
	for _, file := range []string{
		filepath.Join(k8sDir, "fraise.toml"), filepath.Join(composeDir, "fraise.toml"), filepath.Join(systemdDir, "fraise.toml"),
	} {
		t.Run(file, func(t *testing.T) {
			c := mustLoadConfig(t, file, func(string) string { return "" })
			for _, d := range []struct {
				key string
				tls config.DataTLS
				on  bool
			}{
				{"database.tls", c.Database.TLS, c.Database.TLS.Enabled()},
				{"redis.tls", c.Redis.TLS, func() bool { _, on := c.Redis.Endpoint(); return on }()},
			} {
				if !d.on || d.tls.CA == "" || d.tls.Cert == "" || d.tls.Key == "" {
					t.Errorf("%s: got %+v (TLS %v), want TLS with a CA and a client certificate", d.key, d.tls, d.on)
				}
			}
		})
	}
}
