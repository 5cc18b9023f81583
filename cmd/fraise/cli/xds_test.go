package cli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	client "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/internal/logtest"
)

const xdsConfig = `
[tls]
ca = %q
server_cert = %q
server_key = %q
gateway_cert = %q
gateway_key = %q
[server]
http_addr = "10.0.0.1:%d"
[xds]
grpc_addr = "127.0.0.1:0"
poll_interval = "50ms"
`

// TestXDSFollowsConfig runs `fraise xds` and fetches its resources with
// go-control-plane's ADS client, as Envoy would, then edits fraise.toml and
// expects the next snapshot to carry the change.
func TestXDSFollowsConfig(t *testing.T) {
	dir := t.TempDir()
	certs, err := devcerts.Generate(filepath.Join(dir, "certs"), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	xdsTOML := func(port int) []byte {
		return []byte(fmt.Sprintf(xdsConfig, certs.CACert, certs.ServerCert, certs.ServerKey, certs.GatewayCert, certs.GatewayKey, port))
	}
	cfgPath := filepath.Join(dir, "fraise.toml")
	if err := os.WriteFile(cfgPath, xdsTOML(8080), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &logtest.Buffer{}
	go func() {
		done <- cli.Run(ctx, []string{"xds", "--config", cfgPath, "--ready-file", ready}, func(string) string { return "" }, logs, logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fraise xds: %v", err)
		}
	})
	var addrs struct{ XDS string }
	var b []byte
	await.Until(t, 20*time.Second, "fraise xds to become ready", func() bool {
		var err error
		b, err = os.ReadFile(ready)
		return err == nil
	})
	if err := json.Unmarshal(b, &addrs); err != nil {
		t.Fatal(err)
	}
	gw, err := tls.LoadX509KeyPair(certs.GatewayCert, certs.GatewayKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(certs.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{gw}})
	conn, err := grpc.NewClient(addrs.XDS, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	fetch := func(c client.ADSClient) *client.Response {
		t.Helper()
		type result struct {
			r   *client.Response
			err error
		}
		ch := make(chan result, 1)
		go func() {
			r, err := c.Fetch()
			ch <- result{r, err}
		}()
		select {
		case res := <-ch:
			if res.err != nil {
				t.Fatalf("fetch: %v", res.err)
			}
			if err := c.Ack(); err != nil {
				t.Fatalf("ack: %v", err)
			}
			return res.r
		case <-time.After(20 * time.Second):
			t.Fatal("no xDS response within 20s")
		}
		return nil
	}
	node := &corev3.Node{Id: "fraise-ingress"}
	for _, tt := range []struct {
		typ  string
		msg  proto.Message
		name string
	}{
		{resource.ListenerType, &listenerv3.Listener{}, "ingress"},
		{resource.RouteType, &routev3.RouteConfiguration{}, "ingress"},
	} {
		c := client.NewADSClient(ctx, node, tt.typ)
		if err := c.InitConnect(conn); err != nil {
			t.Fatal(err)
		}
		r := fetch(c)
		if len(r.Resources) != 1 {
			t.Fatalf("%s: got %d resources, want 1", tt.typ, len(r.Resources))
		}
		if err := r.Resources[0].UnmarshalTo(tt.msg); err != nil {
			t.Fatal(err)
		}
		if got := tt.msg.ProtoReflect().Get(tt.msg.ProtoReflect().Descriptor().Fields().ByName("name")).String(); got != tt.name {
			t.Errorf("%s: got %q, want %q", tt.typ, got, tt.name)
		}
	}

	clusters := client.NewADSClient(ctx, node, resource.ClusterType)
	if err := clusters.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	coreAddr := func(r *client.Response) string {
		for _, a := range r.Resources {
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				t.Fatal(err)
			}
			if c.GetName() != "core_http" {
				continue
			}
			for _, e := range c.GetLoadAssignment().GetEndpoints() {
				for _, le := range e.GetLbEndpoints() {
					sa := le.GetEndpoint().GetAddress().GetSocketAddress()
					return fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
				}
			}
		}
		return ""
	}
	first := fetch(clusters)
	if got := coreAddr(first); got != "10.0.0.1:8080" {
		t.Fatalf("got core_http at %q, want 10.0.0.1:8080", got)
	}

	// A broken edit is ignored; the next good one is published.
	if err := os.WriteFile(cfgPath, []byte("[server]\nhttp_addr = 12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	await.Until(t, 10*time.Second, "the broken edit to be read and ignored", func() bool {
		return strings.Contains(logs.String(), "configuration change ignored")
	})
	if err := os.WriteFile(cfgPath, xdsTOML(9090), 0o600); err != nil {
		t.Fatal(err)
	}
	next := fetch(clusters)
	if got := coreAddr(next); got != "10.0.0.1:9090" {
		t.Fatalf("got core_http at %q after the change, want 10.0.0.1:9090", got)
	}
}
