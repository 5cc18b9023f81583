package xds_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	client "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/xds"
)

func options(coreAddr string) envoy.Options {
	return envoy.Options{
		ListenAddr: "127.0.0.1:8443", CoreHTTPAddr: coreAddr, AuthzAddr: "127.0.0.1:9191", RateLimitAddr: "127.0.0.1:8081",
		CACert: "ca.pem", ServerCert: "s.pem", ServerKey: "s-key.pem",
		UpstreamCA: "ca.pem", UpstreamCert: "c.pem", UpstreamKey: "c-key.pem",
	}
}

func mustResources(tb testing.TB, coreAddr string) *envoy.Resources {
	tb.Helper()
	res, err := envoy.Build(options(coreAddr))
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func mustServer(tb testing.TB) (*xds.Server, *grpc.ClientConn) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	s := xds.New(ctx, "", nil)
	g := grpc.NewServer()
	s.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return s, conn
}

func coreAddr(tb testing.TB, r *client.Response) string {
	tb.Helper()
	for _, a := range r.Resources {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			tb.Fatal(err)
		}
		if c.GetName() == envoy.ClusterCoreHTTP {
			sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
		}
	}
	return ""
}

func fetch(tb testing.TB, c client.ADSClient) (*client.Response, bool) {
	tb.Helper()
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
			tb.Fatalf("fetch: %v", res.err)
		}
		if err := c.Ack(); err != nil {
			tb.Fatalf("ack: %v", err)
		}
		return res.r, true
	case <-time.After(2 * time.Second):
		return nil, false
	}
}

// TestInvalidResourcesKeepTheLastSnapshot publishes a good configuration,
// an invalid one (refused, nothing sent) and a good change (sent).
func TestInvalidResourcesKeepTheLastSnapshot(t *testing.T) {
	s, conn := mustServer(t)
	ctx := context.Background()
	v1, err := s.Publish(ctx, mustResources(t, "10.0.0.1:8080"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewADSClient(ctx, &corev3.Node{Id: xds.DefaultNodeID}, resource.ClusterType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	r, ok := fetch(t, c)
	if !ok || coreAddr(t, r) != "10.0.0.1:8080" {
		t.Fatalf("first snapshot: got %v", r)
	}

	bad := mustResources(t, "10.0.0.2:8080")
	bad.Clusters[0].ConnectTimeout = nil
	bad.Clusters[0].Name = "" // required by Envoy's validation
	if _, err := s.Publish(ctx, bad); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("got %v, want the invalid resources refused", err)
	}
	v3, err := s.Publish(ctx, mustResources(t, "10.0.0.3:8080"))
	if err != nil {
		t.Fatal(err)
	}
	if v3 == v1 {
		t.Fatalf("got version %s twice", v3)
	}
	r, ok = fetch(t, c)
	if !ok || coreAddr(t, r) != "10.0.0.3:8080" {
		t.Fatalf("after the change: got %v, want core_http at 10.0.0.3:8080 (never the refused 10.0.0.2)", r)
	}
}

// TestRotatedCertificateIsServedAsASecret publishes the configuration,
// then the same with a rotated gateway certificate, and expects the secret
// Envoy fetches over ADS to name the new files.
func TestRotatedCertificateIsServedAsASecret(t *testing.T) {
	s, conn := mustServer(t)
	ctx := context.Background()
	if _, err := s.Publish(ctx, mustResources(t, "10.0.0.1:8080")); err != nil {
		t.Fatal(err)
	}
	c := client.NewADSClient(ctx, &corev3.Node{Id: xds.DefaultNodeID}, resource.SecretType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	// The secret SecretUpstream's file (the listener's SecretListener is
	// served beside it).
	certFile := func(r *client.Response) string {
		t.Helper()
		var names []string
		for _, a := range r.Resources {
			var sec tlsv3.Secret
			if err := a.UnmarshalTo(&sec); err != nil {
				t.Fatal(err)
			}
			if sec.GetName() == envoy.SecretUpstream {
				return sec.GetTlsCertificate().GetCertificateChain().GetFilename()
			}
			names = append(names, sec.GetName())
		}
		t.Fatalf("got secrets %v, want %q among them", names, envoy.SecretUpstream)
		return ""
	}
	r, ok := fetch(t, c)
	if !ok || certFile(r) != "c.pem" {
		t.Fatalf("first snapshot: got %v, want the secret naming c.pem", r)
	}
	o := options("10.0.0.1:8080")
	o.UpstreamCert, o.UpstreamKey = "c2.pem", "c2-key.pem"
	rotated, err := envoy.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish(ctx, rotated); err != nil {
		t.Fatal(err)
	}
	r, ok = fetch(t, c)
	if !ok {
		t.Fatal("no secret update after the rotation")
	}
	if got := certFile(r); got != "c2.pem" {
		t.Fatalf("after the rotation: got the secret naming %q, want c2.pem", got)
	}
}

// TestSecretsAnsweredByName: Envoy asks for the secrets by name, first
// those its clusters name (the gateway's certificate) and, once its
// clusters are warm, the listener's too. Each request is answered at
// once: a secret held back until Envoy names every secret of the snapshot
// would stall Envoy's start for its initial fetch timeout (15 s), its
// clusters waiting on a secret its listener, not yet asked for, names.
func TestSecretsAnsweredByName(t *testing.T) {
	s, conn := mustServer(t)
	ctx := context.Background()
	if _, err := s.Publish(ctx, mustResources(t, "10.0.0.1:8080")); err != nil {
		t.Fatal(err)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv := func(step string) *discoveryv3.DiscoveryResponse {
		t.Helper()
		ch := make(chan *discoveryv3.DiscoveryResponse, 1)
		go func() { r, _ := st.Recv(); ch <- r }()
		select {
		case r := <-ch:
			return r
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no answer", step)
			return nil
		}
	}
	names := func(r *discoveryv3.DiscoveryResponse) []string {
		var got []string
		for _, a := range r.GetResources() {
			var sec tlsv3.Secret
			if err := a.UnmarshalTo(&sec); err != nil {
				t.Fatal(err)
			}
			got = append(got, sec.GetName())
		}
		slices.Sort(got)
		return got
	}
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: xds.DefaultNodeID}, TypeUrl: resource.SecretType, ResourceNames: []string{envoy.SecretUpstream}}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	r := recv("the clusters' secret")
	if got := names(r); !slices.Equal(got, []string{envoy.SecretUpstream}) {
		t.Fatalf("the clusters' secret: got %v, want [%s]", got, envoy.SecretUpstream)
	}
	req = &discoveryv3.DiscoveryRequest{TypeUrl: resource.SecretType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(),
		ResourceNames: []string{envoy.SecretUpstream, envoy.SecretListener}}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	want := []string{envoy.SecretListener, envoy.SecretUpstream}
	if got := names(recv("the listener's secret besides")); !slices.Equal(got, want) {
		t.Fatalf("the listener's secret besides: got %v, want %v", got, want)
	}
}
