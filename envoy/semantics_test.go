package envoy_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	httpmutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	connlimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fraise-dev/fraise/envoy"
)

func unpack[T proto.Message](tb testing.TB, a *anypb.Any, m T) T {
	tb.Helper()
	if a == nil {
		tb.Fatalf("no typed config for %T", m)
	}
	if err := a.UnmarshalTo(m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func hcmOf(tb testing.TB, res *envoy.Resources) *hcmv3.HttpConnectionManager {
	tb.Helper()
	for _, f := range res.Listeners[0].GetFilterChains()[0].GetFilters() {
		if f.GetName() == envoy.FilterHTTPConnectionManager {
			return unpack(tb, f.GetTypedConfig(), &hcmv3.HttpConnectionManager{})
		}
	}
	tb.Fatal("no HTTP connection manager")
	return nil
}

func httpFilter[T proto.Message](tb testing.TB, hcm *hcmv3.HttpConnectionManager, name string, m T) T {
	tb.Helper()
	for _, f := range hcm.GetHttpFilters() {
		if f.GetName() == name {
			return unpack(tb, f.GetTypedConfig(), m)
		}
	}
	tb.Fatalf("no HTTP filter %s", name)
	return m
}

func routesOf(res *envoy.Resources) map[string]*routev3.Route {
	m := map[string]*routev3.Route{}
	for _, r := range res.Routes[0].GetVirtualHosts()[0].GetRoutes() {
		m[r.GetName()] = r
	}
	return m
}

func clusterOf(tb testing.TB, res *envoy.Resources, name string) *clusterv3.Cluster {
	tb.Helper()
	for _, c := range res.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	tb.Fatalf("no cluster %s", name)
	return nil
}

func secretOf(tb testing.TB, res *envoy.Resources, name string) *tlsv3.Secret {
	tb.Helper()
	for _, s := range res.Secrets {
		if s.GetName() == name {
			return s
		}
	}
	tb.Fatalf("no secret %s among %v", name, res.Secrets)
	return nil
}

// TestListenerCertificateIsASecret: over xDS the listener presents the
// secret SecretListener, served over ADS, whose files Envoy follows (a
// renewed certificate needs no restart); the static bootstrap holds the
// files themselves.
func TestListenerCertificateIsASecret(t *testing.T) {
	res := mustBuild(t, opts())
	isServer := func(certs []*tlsv3.TlsCertificate) bool {
		return len(certs) == 1 && certs[0].GetCertificateChain().GetFilename() == "s.pem" && certs[0].GetPrivateKey().GetFilename() == "s-key.pem"
	}
	if s := secretOf(t, res, envoy.SecretListener); !isServer([]*tlsv3.TlsCertificate{s.GetTlsCertificate()}) {
		t.Fatalf("got secret %v, want %s holding s.pem/s-key.pem", s, envoy.SecretListener)
	}
	d := unpack(t, res.Listeners[0].GetFilterChains()[0].GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	ctc := d.GetCommonTlsContext()
	if sds := ctc.GetTlsCertificateSdsSecretConfigs(); len(sds) != 1 || sds[0].GetName() != envoy.SecretListener || sds[0].GetSdsConfig().GetAds() == nil || len(ctc.GetTlsCertificates()) != 0 {
		t.Errorf("got certificates %v and secrets %v, want the secret %s over ADS", ctc.GetTlsCertificates(), sds, envoy.SecretListener)
	}
	static, err := res.Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	sd := unpack(t, static.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	if got := sd.GetCommonTlsContext(); !isServer(got.GetTlsCertificates()) || len(got.GetTlsCertificateSdsSecretConfigs()) != 0 {
		t.Errorf("the static bootstrap: got certificates %v and secrets %v, want s.pem/s-key.pem inline", got.GetTlsCertificates(), got.GetTlsCertificateSdsSecretConfigs())
	}
	if !sd.GetRequireClientCertificate().GetValue() {
		t.Error("the static bootstrap: client certificate not required")
	}
}

func TestListenerRequiresClientCertificates(t *testing.T) {
	res := mustBuild(t, opts())
	fc := res.Listeners[0].GetFilterChains()[0]
	d := unpack(t, fc.GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	ctc := d.GetCommonTlsContext()
	switch {
	case !d.GetRequireClientCertificate().GetValue():
		t.Error("client certificate not required")
	case ctc.GetValidationContext().GetTrustedCa().GetFilename() != "ca.pem":
		t.Errorf("client certificates verified against %v, want ca.pem", ctc.GetValidationContext().GetTrustedCa())
	case ctc.GetTlsParams().GetTlsMinimumProtocolVersion() != tlsv3.TlsParameters_TLSv1_2:
		t.Errorf("got minimum TLS %v, want TLSv1_2", ctc.GetTlsParams().GetTlsMinimumProtocolVersion())
	case !slices.Equal(ctc.GetAlpnProtocols(), []string{"h2", "http/1.1"}):
		t.Errorf("got ALPN %v, want h2, http/1.1", ctc.GetAlpnProtocols())
	}
	filters := fc.GetFilters()
	if len(filters) != 2 || filters[0].GetName() != envoy.FilterConnectionLimit {
		t.Fatalf("got network filters %v, want the connection limit first", filters)
	}
	if cl := unpack(t, filters[0].GetTypedConfig(), &connlimitv3.ConnectionLimit{}); cl.GetMaxConnections().GetValue() != 10000 {
		t.Errorf("got max connections %d, want 10000", cl.GetMaxConnections().GetValue())
	}
	hcm := hcmOf(t, res)
	if hcm.GetMaxRequestHeadersKb().GetValue() != 60 || hcm.GetCommonHttpProtocolOptions().GetMaxHeadersCount().GetValue() != 100 ||
		hcm.GetHttp2ProtocolOptions().GetMaxConcurrentStreams().GetValue() != 100 {
		t.Errorf("header and stream limits: got %d KiB, %d headers, %d streams", hcm.GetMaxRequestHeadersKb().GetValue(),
			hcm.GetCommonHttpProtocolOptions().GetMaxHeadersCount().GetValue(), hcm.GetHttp2ProtocolOptions().GetMaxConcurrentStreams().GetValue())
	}
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() || hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Error("paths are not normalised before routing")
	}
	// Only loopback peers may keep their request id and x-envoy-* headers.
	var internal []string
	for _, c := range hcm.GetInternalAddressConfig().GetCidrRanges() {
		internal = append(internal, fmt.Sprintf("%s/%d", c.GetAddressPrefix(), c.GetPrefixLen().GetValue()))
	}
	if !slices.Equal(internal, []string{"127.0.0.0/8", "::1/128"}) || !hcm.GetUseRemoteAddress().GetValue() || hcm.GetXffNumTrustedHops() != 0 {
		t.Errorf("got internal addresses %v, want loopback only with the peer address used", internal)
	}
	if !httpFilter(t, hcm, envoy.FilterRouter, &routerv3.Router{}).GetSuppressEnvoyHeaders() ||
		hcm.GetServerHeaderTransformation() != hcmv3.HttpConnectionManager_PASS_THROUGH {
		t.Error("Envoy announces itself in response headers")
	}
}

func TestExtAuthzFailsClosed(t *testing.T) {
	o := opts()
	o.AuthzTimeout = 300 * time.Millisecond
	res := mustBuild(t, o)
	ea := httpFilter(t, hcmOf(t, res), envoy.FilterExtAuthz, &extauthzv3.ExtAuthz{})
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow is true: an unreachable extauthz would let requests through")
	}
	if ea.GetStatusOnError().GetCode() != 503 {
		t.Errorf("got status_on_error %v, want 503: no answer is no verdict on the caller", ea.GetStatusOnError())
	}
	gs := ea.GetGrpcService()
	if gs.GetEnvoyGrpc().GetClusterName() != envoy.ClusterAuthz || gs.GetTimeout().AsDuration() != 300*time.Millisecond {
		t.Errorf("got gRPC service %v, want cluster extauthz with a 300ms timeout", gs)
	}
	if !ea.GetIncludePeerCertificate() {
		t.Error("the peer certificate is not sent to extauthz")
	}
	clusterOf(t, res, envoy.ClusterAuthz)
}

// TestRequestBodyWhereExtauthzReadsIt: ext_authz is shown the GraphQL
// request and the console's (the filter's settings: the console's
// assertion is bound to its JSON body) and the one message of the Flight calls
// that name a dataset (per route, partial allowed), all packed as bytes
// (only the filter's pack_as_bytes counts), and no other body: the other
// Flight calls stream.
func TestRequestBodyWhereExtauthzReadsIt(t *testing.T) {
	o := opts()
	o.MaxRequestBytes = 4096
	res := mustBuild(t, o)
	ea := httpFilter(t, hcmOf(t, res), envoy.FilterExtAuthz, &extauthzv3.ExtAuthz{})
	wb := ea.GetWithRequestBody()
	if wb.GetMaxRequestBytes() != 4096 || wb.GetAllowPartialMessage() || !wb.GetPackAsBytes() {
		t.Fatalf("got body buffering %v, want 4096 bytes, no partial messages, packed as bytes", wb)
	}
	described := map[string]bool{}
	for _, m := range envoy.FlightDescribedMethods {
		described["flight_"+m] = true
	}
	for name, r := range routesOf(res) {
		var per *extauthzv3.ExtAuthzPerRoute
		if a, ok := r.GetTypedPerFilterConfig()[envoy.FilterExtAuthz]; ok {
			per = unpack(t, a, &extauthzv3.ExtAuthzPerRoute{})
		}
		bodySent := !per.GetDisabled() && !per.GetCheckSettings().GetDisableRequestBodyBuffering()
		if want := name == "graphql" || name == "console" || described[name]; bodySent != want {
			t.Errorf("route %s: body sent to extauthz %v, want %v", name, bodySent, want)
		}
		if !described[name] {
			continue
		}
		rb := per.GetCheckSettings().GetWithRequestBody()
		if rb.GetMaxRequestBytes() != envoy.FlightDescriptorMaxBytes || !rb.GetAllowPartialMessage() {
			t.Errorf("route %s: body settings %v, want %d bytes, partial", name, rb, envoy.FlightDescriptorMaxBytes)
		}
	}
}

func TestIdentityHeadersRemovedBeforeExtAuthz(t *testing.T) {
	res := mustBuild(t, opts())
	hcm := hcmOf(t, res)
	// The early header mutation runs before any HTTP filter.
	exts := hcm.GetEarlyHeaderMutationExtensions()
	if len(exts) != 1 {
		t.Fatalf("got %d early header mutations, want 1", len(exts))
	}
	hm := unpack(t, exts[0].GetTypedConfig(), &headermutationv3.HeaderMutation{})
	km := hm.GetMutations()[0].GetRemoveOnMatch().GetKeyMatcher()
	if km.GetPrefix() != "x-fraise-" || !km.GetIgnoreCase() {
		t.Fatalf("got removal matcher %v, want prefix x-fraise- ignoring case", km)
	}
	var names []string
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	if !slices.Equal(names, []string{envoy.FilterHeaderMutation, envoy.FilterBodySizeLimit, envoy.FilterExtAuthz, envoy.FilterRateLimit, envoy.FilterRouter}) {
		t.Fatalf("got HTTP filters %v, want header_mutation, body_size_limit, ext_authz, ratelimit, router", names)
	}
	// Request trailers, which the early mutation does not see, are all
	// dropped.
	tm := httpFilter(t, hcm, envoy.FilterHeaderMutation, &httpmutationv3.HeaderMutation{}).GetMutations().GetRequestTrailersMutations()
	if len(tm) != 1 || tm[0].GetRemoveOnMatch().GetKeyMatcher().GetSafeRegex().GetRegex() != ".*" {
		t.Fatalf("got request trailer mutations %v, want every trailer removed", tm)
	}
	for name, r := range routesOf(res) {
		for _, h := range r.GetRequestHeadersToAdd() {
			t.Errorf("route %s adds header %s: identity must come from extauthz only", name, h.GetHeader().GetKey())
		}
	}
}

func TestRateLimitDescriptorActions(t *testing.T) {
	o := opts()
	o.RateLimitFailureModeDeny = true
	res := mustBuild(t, o)
	rl := httpFilter(t, hcmOf(t, res), envoy.FilterRateLimit, &ratelimitv3.RateLimit{})
	switch {
	case rl.GetDomain() != "fraise":
		t.Errorf("got domain %q, want fraise", rl.GetDomain())
	case !rl.GetFailureModeDeny():
		t.Error("failure_mode_deny not carried over")
	case !rl.GetRateLimitedAsResourceExhausted():
		t.Error("gRPC clients would get UNAVAILABLE, not RESOURCE_EXHAUSTED")
	case rl.GetEnableXRatelimitHeaders() != ratelimitv3.RateLimit_DRAFT_VERSION_03:
		t.Error("no RateLimit response headers")
	case rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName() != envoy.ClusterRateLimit:
		t.Errorf("rate limiter reached through %v", rl.GetRateLimitService())
	}
	// The contract with the rate-limit service's configuration, spelt out.
	want := [][][2]string{
		{{"x-fraise-tier", "tier"}, {"x-fraise-tenant", "tenant"}},
		{{"x-fraise-tier", "tier"}, {"x-fraise-tenant", "tenant"}, {"x-fraise-op", "op"}},
		{{"x-fraise-tier", "tier"}, {"x-fraise-subject", "subject"}},
	}
	routes := routesOf(res)
	for _, name := range []string{"graphql", "flight"} {
		var got [][][2]string
		for _, r := range routes[name].GetRoute().GetRateLimits() {
			var d [][2]string
			for _, a := range r.GetActions() {
				rh := a.GetRequestHeaders()
				if rh == nil || rh.GetSkipIfAbsent() {
					t.Fatalf("route %s: action %v, want request_headers that skip the descriptor when absent", name, a)
				}
				d = append(d, [2]string{rh.GetHeaderName(), rh.GetDescriptorKey()})
			}
			got = append(got, d)
		}
		if !slices.EqualFunc(got, want, func(a, b [][2]string) bool { return slices.Equal(a, b) }) {
			t.Errorf("route %s: got descriptors %v, want %v", name, got, want)
		}
	}
	if n := len(routes["not_found"].GetDirectResponse().GetBody().GetInlineString()); n == 0 {
		t.Error("not_found route has no body")
	}
}

func TestUpstreamMTLS(t *testing.T) {
	res := mustBuild(t, opts())
	isGateway := func(certs []*tlsv3.TlsCertificate) bool {
		return len(certs) == 1 && certs[0].GetCertificateChain().GetFilename() == "c.pem" && certs[0].GetPrivateKey().GetFilename() == "c-key.pem"
	}
	if s := secretOf(t, res, envoy.SecretUpstream); !isGateway([]*tlsv3.TlsCertificate{s.GetTlsCertificate()}) {
		t.Fatalf("got secret %v, want %s holding c.pem/c-key.pem", s, envoy.SecretUpstream)
	}
	static, err := res.Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	xdsBoot, err := res.XDSBootstrap()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{envoy.ClusterCoreHTTP, envoy.ClusterCoreFlight, envoy.ClusterAuthz} {
		c := clusterOf(t, res, name)
		u := unpack(t, c.GetTransportSocket().GetTypedConfig(), &tlsv3.UpstreamTlsContext{})
		ctc := u.GetCommonTlsContext()
		// Over xDS the certificate is the secret, served over ADS too.
		sds := ctc.GetTlsCertificateSdsSecretConfigs()
		if len(sds) != 1 || sds[0].GetName() != envoy.SecretUpstream || sds[0].GetSdsConfig().GetAds() == nil || len(ctc.GetTlsCertificates()) != 0 {
			t.Errorf("%s: got certificates %v and secrets %v, want the secret %s over ADS", name, ctc.GetTlsCertificates(), sds, envoy.SecretUpstream)
		}
		// The static bootstrap holds its files instead.
		for _, sc := range static.GetStaticResources().GetClusters() {
			if sc.GetName() == name {
				su := unpack(t, sc.GetTransportSocket().GetTypedConfig(), &tlsv3.UpstreamTlsContext{})
				if got := su.GetCommonTlsContext(); !isGateway(got.GetTlsCertificates()) || len(got.GetTlsCertificateSdsSecretConfigs()) != 0 {
					t.Errorf("%s in the static bootstrap: got certificates %v and secrets %v, want c.pem/c-key.pem inline", name, got.GetTlsCertificates(), got.GetTlsCertificateSdsSecretConfigs())
				}
			}
		}
		vc := ctc.GetValidationContext()
		if vc.GetTrustedCa().GetFilename() != "ca.pem" {
			t.Errorf("%s: server certificate not verified against ca.pem", name)
		}
		sans := vc.GetMatchTypedSubjectAltNames()
		if len(sans) != 1 || sans[0].GetMatcher().GetExact() != "localhost" || u.GetSni() != "localhost" {
			t.Errorf("%s: got SAN matchers %v and SNI %q, want localhost", name, sans, u.GetSni())
		}
	}
	// The xDS bootstrap's own cluster connects before any secret arrives.
	xc := xdsBoot.GetStaticResources().GetClusters()[0]
	xu := unpack(t, xc.GetTransportSocket().GetTypedConfig(), &tlsv3.UpstreamTlsContext{})
	if !isGateway(xu.GetCommonTlsContext().GetTlsCertificates()) {
		t.Errorf("xds cluster: got certificates %v, want c.pem/c-key.pem inline", xu.GetCommonTlsContext().GetTlsCertificates())
	}
}

func TestClustersAreGuarded(t *testing.T) {
	res := mustBuild(t, opts())
	var names []string
	for _, c := range res.Clusters {
		names = append(names, c.GetName())
		if c.GetConnectTimeout().AsDuration() <= 0 {
			t.Errorf("%s: no connect timeout", c.GetName())
		}
		if len(c.GetHealthChecks()) != 1 || c.GetHealthChecks()[0].GetTimeout().AsDuration() <= 0 {
			t.Errorf("%s: no health check", c.GetName())
		}
		th := c.GetCircuitBreakers().GetThresholds()
		if len(th) != 1 || th[0].GetMaxConnections().GetValue() == 0 || th[0].GetMaxRequests().GetValue() == 0 {
			t.Errorf("%s: no circuit-breaker thresholds", c.GetName())
		}
		if c.GetOutlierDetection().GetConsecutive_5Xx().GetValue() == 0 {
			t.Errorf("%s: no outlier detection", c.GetName())
		}
	}
	want := []string{envoy.ClusterCoreHTTP, envoy.ClusterAuthz, envoy.ClusterRateLimit, envoy.ClusterCoreFlight, envoy.ClusterOTel}
	if !slices.Equal(names, want) {
		t.Fatalf("got clusters %v, want %v", names, want)
	}
	if clusterOf(t, res, envoy.ClusterRateLimit).GetHealthChecks()[0].GetGrpcHealthCheck() == nil {
		t.Error("ratelimit serves grpc.health.v1: want a gRPC health check")
	}
	b, err := res.XDSBootstrap()
	if err != nil {
		t.Fatal(err)
	}
	xds := b.GetStaticResources().GetClusters()
	if len(xds) != 1 || xds[0].GetName() != envoy.ClusterXDS || xds[0].GetHealthChecks()[0].GetGrpcHealthCheck() == nil ||
		xds[0].GetCircuitBreakers() == nil || xds[0].GetOutlierDetection() == nil {
		t.Fatalf("xDS bootstrap clusters %v, want one guarded xds cluster", xds)
	}
	ads := b.GetDynamicResources()
	if ads.GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != envoy.ClusterXDS ||
		ads.GetLdsConfig().GetAds() == nil || ads.GetCdsConfig().GetAds() == nil {
		t.Fatalf("xDS bootstrap dynamic resources %v, want LDS and CDS over ADS from cluster xds", ads)
	}
	if b.GetNode().GetId() != envoy.DefaultNodeID {
		t.Errorf("got node id %q, want %q", b.GetNode().GetId(), envoy.DefaultNodeID)
	}
}

func TestOnlyAPIRoutesAreExposed(t *testing.T) {
	res := mustBuild(t, opts())
	rs := res.Routes[0].GetVirtualHosts()[0].GetRoutes()
	nf := len(envoy.FlightDescribedMethods)
	if len(rs) != 4+nf {
		t.Fatalf("got %d routes, want graphql, %d Flight methods, flight, console, not_found", len(rs), nf)
	}
	if rs[0].GetMatch().GetPath() != "/graphql" || rs[0].GetRoute().GetCluster() != envoy.ClusterCoreHTTP {
		t.Errorf("route 0: got %v, want exactly /graphql to core_http", rs[0].GetMatch())
	}
	// The exact Flight methods come before the Flight prefix, which would
	// otherwise take them.
	for i, m := range envoy.FlightDescribedMethods {
		r := rs[1+i]
		if r.GetMatch().GetPath() != envoy.FlightPrefix+m || r.GetMatch().GetGrpc() == nil || r.GetRoute().GetCluster() != envoy.ClusterCoreFlight {
			t.Errorf("route %d: got %v, want gRPC %s to core_flight", 1+i, r.GetMatch(), m)
		}
	}
	if r := rs[1+nf]; r.GetMatch().GetPrefix() != envoy.FlightPrefix || r.GetMatch().GetGrpc() == nil || r.GetRoute().GetCluster() != envoy.ClusterCoreFlight {
		t.Errorf("route %d: got %v, want gRPC Flight to core_flight", 1+nf, r.GetMatch())
	}
	if r := rs[2+nf]; r.GetMatch().GetPathSeparatedPrefix() != envoy.ConsolePrefix || r.GetRoute().GetCluster() != envoy.ClusterCoreHTTP {
		t.Errorf("route %d: got %v, want /console and below to core_http", 2+nf, r.GetMatch())
	}
	if r := rs[3+nf]; r.GetMatch().GetPrefix() != "/" || r.GetDirectResponse().GetStatus() != 404 {
		t.Errorf("route %d: got %v, want everything else answered 404", 3+nf, r)
	}
	for name, wantH2 := range map[string]bool{envoy.ClusterCoreFlight: true, envoy.ClusterCoreHTTP: false, envoy.ClusterAuthz: true, envoy.ClusterRateLimit: true} {
		a := clusterOf(t, res, name).GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if a == nil {
			t.Errorf("cluster %s has no HTTP protocol options", name)
			continue
		}
		po := unpack(t, a, &httpv3.HttpProtocolOptions{})
		if h2 := po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil; h2 != wantH2 {
			t.Errorf("cluster %s: HTTP/2 %v, want %v", name, h2, wantH2)
		}
		// The core closes idle connections after two minutes: Envoy must
		// let go of them first.
		if idle := po.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration(); idle <= 0 || idle >= 2*time.Minute {
			t.Errorf("cluster %s: upstream idle timeout %v, want under the core's 2m", name, idle)
		}
	}
	o := opts()
	o.CoreFlightAddr = ""
	for name := range routesOf(mustBuild(t, o)) {
		if strings.HasPrefix(name, "flight") {
			t.Errorf("Flight route %s without a Flight address", name)
		}
	}
}

func TestTracingThroughOpenTelemetry(t *testing.T) {
	hcm := hcmOf(t, mustBuild(t, opts()))
	tr := hcm.GetTracing()
	if tr.GetProvider().GetName() != envoy.TracerOpenTelemetry || tr.GetRandomSampling().GetValue() != 10 {
		t.Fatalf("got tracing %v, want OpenTelemetry sampling 10%%", tr)
	}
	otel := unpack(t, tr.GetProvider().GetTypedConfig(), &tracev3.OpenTelemetryConfig{})
	if otel.GetGrpcService().GetEnvoyGrpc().GetClusterName() != envoy.ClusterOTel {
		t.Errorf("spans exported through %v, want cluster %s", otel.GetGrpcService(), envoy.ClusterOTel)
	}
	if otel.GetServiceName() != envoy.TraceServiceName {
		t.Errorf("got service name %q, want %q", otel.GetServiceName(), envoy.TraceServiceName)
	}
	o := opts()
	o.OTLPEndpoint = ""
	if tr := hcmOf(t, mustBuild(t, o)).GetTracing(); tr != nil {
		t.Errorf("got tracing %v without a collector", tr)
	}
}

func TestJSONAccessLog(t *testing.T) {
	hcm := hcmOf(t, mustBuild(t, opts()))
	if len(hcm.GetAccessLog()) != 1 {
		t.Fatalf("got %d access logs, want 1", len(hcm.GetAccessLog()))
	}
	al := unpack(t, hcm.GetAccessLog()[0].GetTypedConfig(), &streamv3.StdoutAccessLog{})
	fields := al.GetLogFormat().GetJsonFormat().GetFields()
	for _, c := range []struct{ key, operator string }{
		{"time", "%START_TIME%"},
		{"request_id", "%REQ(X-REQUEST-ID)%"},
		{"trace_id", "%TRACE_ID%"},
		{"span_id", "%SPAN_ID%"},
		{"method", "%REQ(:METHOD)%"},
		// A GraphQL GET's query string holds its variables: tenant data.
		{"path", "%PATH(WQ)%"},
		{"status", "%RESPONSE_CODE%"},
		{"flags", "%RESPONSE_FLAGS%"},
		{"duration", "%DURATION%"},
		{"upstream_host", "%UPSTREAM_HOST%"},
		{"client_subject", "%DOWNSTREAM_PEER_SUBJECT%"},
		{"tenant", "%REQ(x-fraise-tenant)%"},
		{"subject", "%REQ(x-fraise-subject)%"},
	} {
		if got := fields[c.key].GetStringValue(); got != c.operator {
			t.Errorf("access log field %s: got %q, want %q", c.key, got, c.operator)
		}
	}
	if len(fields) != len(envoy.AccessLogFields) {
		t.Errorf("got %d access log fields, want the %d of envoy.AccessLogFields", len(fields), len(envoy.AccessLogFields))
	}
	for _, v := range fields {
		if strings.Contains(v.GetStringValue(), "%REQ(:PATH)%") {
			t.Errorf("access log logs the path with its query: %q", v.GetStringValue())
		}
	}
	if !hcm.GetAlwaysSetRequestIdInResponse() {
		t.Error("the request id is not on responses: a client cannot quote it")
	}
}

// TestLocalRepliesAreGraphQLShaped checks the local reply mappers: every
// body the ingress writes itself is a GraphQL error with a code; an
// ext_authz failure (503) is mapped before extauthz's own denials are let
// through unchanged, so neither a policy's reason is lost nor a failed
// check left with an empty body; and 502/503 carry Retry-After.
func TestLocalRepliesAreGraphQLShaped(t *testing.T) {
	mappers := hcmOf(t, mustBuild(t, opts())).GetLocalReplyConfig().GetMappers()
	if len(mappers) < 3 {
		t.Fatalf("got %d mappers", len(mappers))
	}
	first := mappers[0].GetFilter().GetAndFilter().GetFilters()
	if len(first) != 2 || !slices.Equal(first[0].GetResponseFlagFilter().GetFlags(), []string{envoy.FlagExtAuthz}) ||
		first[1].GetStatusCodeFilter().GetComparison().GetValue().GetDefaultValue() != 503 ||
		mappers[0].GetBody().GetInlineString() != envoy.UnavailableBody {
		t.Errorf("mapper 0 is %v, want ext_authz's 503 mapped to UNAVAILABLE", mappers[0])
	}
	if !slices.Equal(mappers[1].GetFilter().GetResponseFlagFilter().GetFlags(), []string{envoy.FlagExtAuthz}) ||
		mappers[1].GetBody() != nil || mappers[1].GetStatusCode() != nil || mappers[1].GetBodyFormatOverride() != nil {
		t.Errorf("mapper 1 is %v, want ext_authz's other replies matched and left alone", mappers[1])
	}
	// By the status filter's comparison: each status the ingress answers
	// itself, then everything else at or over 500 and at or over 400.
	want := map[string]string{
		"EQ 408": "TIMEOUT", "EQ 413": "TOO_LARGE", "EQ 429": "RATE_LIMITED", "EQ 431": "TOO_LARGE",
		"EQ 502": "UNAVAILABLE", "EQ 503": "UNAVAILABLE", "EQ 504": "TIMEOUT", "GE 500": "INTERNAL", "GE 400": "BAD_REQUEST",
	}
	var order []string
	for _, m := range mappers[2:] {
		cmp := m.GetFilter().GetStatusCodeFilter().GetComparison()
		status := fmt.Sprintf("%s %d", cmp.GetOp(), cmp.GetValue().GetDefaultValue())
		order = append(order, status)
		if status == "EQ 404" {
			// The not_found route's JSON body, kept and labelled JSON.
			if m.GetBody() != nil || m.GetBodyFormatOverride().GetContentType() != "application/json" {
				t.Errorf("status 404: mapper %v, want the body kept as application/json", m)
			}
			continue
		}
		code, ok := want[status]
		if !ok {
			t.Errorf("unexpected mapper for status %s", status)
			continue
		}
		delete(want, status)
		var body struct {
			Errors []struct {
				Message    string
				Extensions struct{ Code string }
			}
		}
		if err := json.Unmarshal([]byte(m.GetBody().GetInlineString()), &body); err != nil || len(body.Errors) != 1 ||
			body.Errors[0].Message == "" || body.Errors[0].Extensions.Code != code {
			t.Errorf("status %s: body %q (%v), want one GraphQL error with code %s", status, m.GetBody().GetInlineString(), err, code)
		}
		if ct := m.GetBodyFormatOverride().GetContentType(); ct != "application/json" {
			t.Errorf("status %s: content type %q", status, ct)
		}
		hasRetry := len(m.GetHeadersToAdd()) == 1 && m.GetHeadersToAdd()[0].GetHeader().GetKey() == "retry-after"
		if (status == "EQ 502" || status == "EQ 503") != hasRetry {
			t.Errorf("status %s: headers %v, want Retry-After exactly on 502 and 503", status, m.GetHeadersToAdd())
		}
	}
	// The first mapper that matches applies: the catch-alls come last.
	if n := len(order); n < 2 || order[n-2] != "GE 500" || order[n-1] != "GE 400" {
		t.Errorf("got mappers in order %v, want the GE 500 and GE 400 catch-alls last", order)
	}
	if len(want) > 0 {
		t.Errorf("no mapper for %v", want)
	}
}

func TestGraphQLRouteTimeout(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  time.Duration
		want time.Duration
	}{
		{name: "default", want: 30 * time.Second},
		{name: "set", set: 12 * time.Second, want: 12 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := opts()
			o.GraphQLTimeout = tt.set
			if got := routesOf(mustBuild(t, o))["graphql"].GetRoute().GetTimeout().AsDuration(); got != tt.want {
				t.Errorf("got graphql route timeout %s, want %s", got, tt.want)
			}
		})
	}
	o := opts()
	o.GraphQLTimeout = -time.Second
	if _, err := envoy.Build(o); err == nil || !strings.Contains(err.Error(), "GraphQLTimeout") {
		t.Errorf("a negative timeout: got %v, want an error naming GraphQLTimeout", err)
	}
}

// TestSecretsWatchTheirDirectory: a secret whose certificate and key sit
// in one directory (a mounted Kubernetes Secret) names it as its
// watched_directory: Kubernetes renews the files by swapping the
// directory's ..data link, which moves neither file, and Envoy reloads on
// any move in a watched directory. The static bootstrap, whose
// certificates Envoy reads once, names none.
func TestSecretsWatchTheirDirectory(t *testing.T) {
	o := opts()
	o.ServerCert, o.ServerKey = "/etc/fraise/tls/server/tls.crt", "/etc/fraise/tls/server/tls.key"
	o.UpstreamCert, o.UpstreamKey = "/etc/fraise/tls/gateway/tls.crt", "/etc/fraise/tls/gateway/tls.key"
	res := mustBuild(t, o)
	for name, dir := range map[string]string{envoy.SecretListener: "/etc/fraise/tls/server", envoy.SecretUpstream: "/etc/fraise/tls/gateway"} {
		if got := secretOf(t, res, name).GetTlsCertificate().GetWatchedDirectory().GetPath(); got != dir {
			t.Errorf("%s: got watched directory %q, want %q", name, got, dir)
		}
	}
	// Relative names, or a certificate and key in two directories: the
	// files' own directories are watched, as Envoy does by default.
	if got := secretOf(t, mustBuild(t, opts()), envoy.SecretListener).GetTlsCertificate().GetWatchedDirectory(); got != nil {
		t.Errorf("relative names: got watched directory %v, want none", got)
	}
	static, err := res.Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	d := unpack(t, static.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	if got := d.GetCommonTlsContext().GetTlsCertificates()[0].GetWatchedDirectory(); got != nil {
		t.Errorf("static bootstrap: got watched directory %v, want none", got)
	}
}
