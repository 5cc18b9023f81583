package envoy_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fraise-dev/fraise/envoy"
)

func opts() envoy.Options {
	return envoy.Options{
		ListenAddr: "127.0.0.1:8443", CoreHTTPAddr: "127.0.0.1:8080", CoreFlightAddr: "127.0.0.1:8815",
		AuthzAddr: "127.0.0.1:9191", RateLimitAddr: "127.0.0.1:8081",
		CACert: "ca.pem", ServerCert: "s.pem", ServerKey: "s-key.pem",
		UpstreamCA: "ca.pem", UpstreamCert: "c.pem", UpstreamKey: "c-key.pem",
		OTLPEndpoint: "127.0.0.1:4317", TraceSamplePercent: 10, XDSAddr: "127.0.0.1:18000",
	}
}

func mustBuild(tb testing.TB, o envoy.Options) *envoy.Resources {
	tb.Helper()
	res, err := envoy.Build(o)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func TestBuildValidates(t *testing.T) {
	res := mustBuild(t, opts())
	if err := res.Validate(); err != nil {
		t.Fatalf("generated resources fail validation: %v", err)
	}
	for _, tt := range []struct {
		name  string
		build func() (*bootstrapv3.Bootstrap, error)
	}{
		{"static", res.Bootstrap},
		{"xds", res.XDSBootstrap},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.build()
			if err != nil {
				t.Fatal(err)
			}
			if err := envoy.ValidateDeep(b); err != nil {
				t.Fatalf("bootstrap fails validation: %v", err)
			}
			y, err := envoy.BootstrapYAML(b)
			if err != nil {
				t.Fatal(err)
			}
			back, err := envoy.ParseBootstrapYAML(y)
			if err != nil {
				t.Fatalf("bootstrap does not parse back: %v", err)
			}
			if err := envoy.ValidateDeep(back); err != nil {
				t.Fatalf("parsed bootstrap invalid: %v", err)
			}
			// Lossless: written again, the parsed bootstrap is the same text
			// (compared as text: Any bytes need not be canonical).
			again, err := envoy.BootstrapYAML(back)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(y) {
				t.Fatal("the bootstrap parsed back from YAML differs from the one written")
			}
		})
	}
}

func TestStaticBootstrapResolvesEveryTypedConfig(t *testing.T) {
	b, err := mustBuild(t, opts()).Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	y, err := envoy.BootstrapYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := envoy.ParseBootstrapYAML(y)
	if err != nil {
		t.Fatal(err)
	}
	// Every typed config the static file names must be a type linked into
	// this binary and resolved by protojson, not kept as opaque bytes.
	for _, want := range []string{
		"envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit",
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
		"envoy.extensions.filters.http.body_size_limit.v3.BodySizeLimit",
		"envoy.config.route.v3.FilterConfig",
		"envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
		"envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
		"envoy.extensions.filters.http.ratelimit.v3.RateLimit",
		"envoy.extensions.filters.http.router.v3.Router",
		"envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
		"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
		"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
		"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
		"envoy.config.trace.v3.OpenTelemetryConfig",
		"envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
	} {
		if !strings.Contains(string(y), "type.googleapis.com/"+want) {
			t.Errorf("static bootstrap has no %s", want)
		}
	}
	hcmAny := back.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[1].GetTypedConfig()
	var hcm hcmv3.HttpConnectionManager
	if err := anypb.UnmarshalTo(hcmAny, &hcm, proto.UnmarshalOptions{}); err != nil {
		t.Fatalf("HTTP connection manager: %v", err)
	}
	if hcm.GetRouteConfig().GetName() != envoy.RouteName {
		t.Fatalf("static bootstrap: got route config %q inlined, want %q", hcm.GetRouteConfig().GetName(), envoy.RouteName)
	}
}

func TestBrokenOptionsAreCaught(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*envoy.Options)
		want string
	}{
		{"no listen address", func(o *envoy.Options) { o.ListenAddr = "" }, "ListenAddr is required"},
		{"bad port", func(o *envoy.Options) { o.CoreHTTPAddr = "127.0.0.1:99999" }, "CoreHTTPAddr"},
		{"no CA", func(o *envoy.Options) { o.CACert = "" }, "CACert is required"},
		{"no upstream key", func(o *envoy.Options) { o.UpstreamKey = "" }, "UpstreamKey is required"},
		{"sampling over 100%", func(o *envoy.Options) { o.TraceSamplePercent = 150 }, "TraceSamplePercent"},
		{"collector without port", func(o *envoy.Options) { o.OTLPEndpoint = "collector" }, "OTLPEndpoint"},
		{"huge body buffer", func(o *envoy.Options) { o.MaxRequestBytes = 1 << 30 }, "MaxRequestBytes"},
		// Envoy binds IP addresses only ("malformed IP address").
		{"listen address a host name", func(o *envoy.Options) { o.ListenAddr = "localhost:8443" }, "ListenAddr"},
		{"admin address a host name", func(o *envoy.Options) { o.AdminAddr = "localhost:9901" }, "AdminAddr"},
		// Envoy refuses a negative duration anywhere in its configuration.
		{"negative authz timeout", func(o *envoy.Options) { o.AuthzTimeout = -time.Second }, "AuthzTimeout"},
		{"negative rate-limit timeout", func(o *envoy.Options) { o.RateLimitTimeout = -time.Second }, "RateLimitTimeout"},
		{"negative route timeout", func(o *envoy.Options) { o.RouteTimeout = -time.Second }, "RouteTimeout"},
		{"negative stream idle timeout", func(o *envoy.Options) { o.StreamIdleTimeout = -time.Second }, "StreamIdleTimeout"},
		{"negative idle timeout", func(o *envoy.Options) { o.IdleTimeout = -time.Second }, "IdleTimeout"},
		{"negative request headers timeout", func(o *envoy.Options) { o.RequestHeadersTimeout = -time.Second }, "RequestHeadersTimeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := opts()
			tt.mod(&o)
			_, err := envoy.Build(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// TestValidationOpensTypedConfigs breaks a field deep inside a typed
// config (an Any within an Any) and expects Validate to find it, as Envoy
// would refuse the configuration.
func TestValidationOpensTypedConfigs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		breakIt func(*hcmv3.HttpConnectionManager)
		want    string
	}{
		{"empty stat prefix", func(h *hcmv3.HttpConnectionManager) { h.StatPrefix = "" }, "StatPrefix"},
		{"ext_authz without a cluster", func(h *hcmv3.HttpConnectionManager) {
			i := slices.IndexFunc(h.GetHttpFilters(), func(f *hcmv3.HttpFilter) bool { return f.GetName() == envoy.FilterExtAuthz })
			var ea extauthzv3.ExtAuthz
			if err := h.GetHttpFilters()[i].GetTypedConfig().UnmarshalTo(&ea); err != nil {
				t.Fatal(err)
			}
			ea.GetGrpcService().GetEnvoyGrpc().ClusterName = ""
			h.GetHttpFilters()[i].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &ea)}
		}, "ClusterName"},
		{"header limit over Envoy's maximum", func(h *hcmv3.HttpConnectionManager) {
			h.MaxRequestHeadersKb = wrapperspb.UInt32(10000)
		}, "MaxRequestHeadersKb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := mustBuild(t, opts())
			f := res.Listeners[0].GetFilterChains()[0].GetFilters()[1]
			var hcm hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(&hcm)
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &hcm)}
			err := res.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a validation error naming %s", err, tt.want)
			}
		})
	}
}

func TestParseBootstrapYAMLRefuses(t *testing.T) {
	b, err := mustBuild(t, opts()).Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	y, err := envoy.BootstrapYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, old, new string }{
		{"unknown typed config", "envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.nosuch.v3.Filter"},
		{"misspelled field", "statPrefix: ingress", "statPrefx: ingress"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(y), tt.old) {
				t.Fatalf("bootstrap has no %q to break", tt.old)
			}
			if _, err := envoy.ParseBootstrapYAML([]byte(strings.Replace(string(y), tt.old, tt.new, 1))); err == nil {
				t.Fatal("got no error")
			}
		})
	}
}

func mustAny(tb testing.TB, m proto.Message) *anypb.Any {
	tb.Helper()
	a, err := anypb.New(m)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
