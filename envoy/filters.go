package envoy

import (
	"path/filepath"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	bodysizev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/body_size_limit/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	httpmutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	connlimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type anyMsg = anypb.Any

// Filter and extension names, as Envoy registers them.
const (
	FilterConnectionLimit       = "envoy.filters.network.connection_limit"
	FilterHTTPConnectionManager = "envoy.filters.network.http_connection_manager"
	FilterHeaderMutation        = "envoy.filters.http.header_mutation"
	FilterBodySizeLimit         = "envoy.filters.http.body_size_limit"
	FilterExtAuthz              = "envoy.filters.http.ext_authz"
	FilterRateLimit             = "envoy.filters.http.ratelimit"
	FilterRouter                = "envoy.filters.http.router"
	EarlyHeaderMutation         = "envoy.http.early_header_mutation.header_mutation"
	TransportSocketTLS          = "envoy.transport_sockets.tls"
	TracerOpenTelemetry         = "envoy.tracers.opentelemetry"
	RateLimitedBody             = `{"errors":[{"message":"rate limit exceeded","extensions":{"code":"RATE_LIMITED"}}]}`
	NotFoundBody                = `{"errors":[{"message":"no such route","extensions":{"code":"NOT_FOUND"}}]}`
	TooLargeBody                = `{"errors":[{"message":"request body too large","extensions":{"code":"TOO_LARGE"}}]}`
	UnavailableBody             = `{"errors":[{"message":"service unavailable, retry later","extensions":{"code":"UNAVAILABLE"}}]}`
	TimeoutBody                 = `{"errors":[{"message":"upstream timed out","extensions":{"code":"TIMEOUT"}}]}`
	RequestTimeoutBody          = `{"errors":[{"message":"request not received in time","extensions":{"code":"TIMEOUT"}}]}`
	HeadersTooLargeBody         = `{"errors":[{"message":"request headers too large","extensions":{"code":"TOO_LARGE"}}]}`
	BadRequestBody              = `{"errors":[{"message":"malformed request","extensions":{"code":"BAD_REQUEST"}}]}`
	InternalBody                = `{"errors":[{"message":"internal error in the ingress","extensions":{"code":"INTERNAL"}}]}`
)

// UnavailableRetryAfter is the Retry-After, in seconds, of the ingress's
// own 502 and 503 answers: the core's admission answers its 503s with the
// same default (admission.retry_after).
const UnavailableRetryAfter = "1"

// The identity headers extauthz sets (and the early header mutation removes
// from what clients send), from which the rate-limit descriptors are built.
const (
	TierHeader    = "x-fraise-tier"
	TenantHeader  = "x-fraise-tenant"
	SubjectHeader = "x-fraise-subject"
	OpHeader      = "x-fraise-op"
)

// Limits on what one client can make the ingress hold.
const (
	MaxRequestHeadersKB  = 60
	MaxHeadersCount      = 100
	MaxConcurrentStreams = 100
)

// DescriptorEntry is one entry of a rate-limit descriptor: its key and the
// request header its value is read from.
type DescriptorEntry struct{ Key, Header string }

// RateLimitDescriptors returns the descriptors every routed request is
// counted under, in order, each entry's key and header:
//
//	D1 (tier, x-fraise-tier), (tenant, x-fraise-tenant)
//	D2 (tier, x-fraise-tier), (tenant, x-fraise-tenant), (op, x-fraise-op)
//	D3 (tier, x-fraise-tier), (subject, x-fraise-subject)
//
// This is the contract with the rate-limit service's configuration, which
// nests its limits in the same key order (tier, then tenant or subject,
// then op). Envoy skips a descriptor whose header is absent.
func RateLimitDescriptors() [][]DescriptorEntry {
	tier := DescriptorEntry{Key: "tier", Header: TierHeader}
	tenant := DescriptorEntry{Key: "tenant", Header: TenantHeader}
	return [][]DescriptorEntry{
		{tier, tenant},
		{tier, tenant, {Key: "op", Header: OpHeader}},
		{tier, {Key: "subject", Header: SubjectHeader}},
	}
}

// mustAny packs m deterministically (map entries in key order): the same
// options give the same bytes, so a resource a change is not about stays
// identical and Envoy keeps it as it is.
func mustAny(m proto.Message) *anypb.Any {
	a := new(anypb.Any)
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(err) // only for messages of linked-in types, which always marshal
	}
	return a
}

func file(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func inline(s string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
}

func connectionLimit(o Options) *connlimitv3.ConnectionLimit {
	return &connlimitv3.ConnectionLimit{StatPrefix: "ingress", MaxConnections: wrapperspb.UInt64(o.MaxConnections)}
}

func envoyGrpc(cluster string, timeout time.Duration) *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}},
		Timeout:         durationpb.New(timeout),
	}
}

// httpConnectionManager is the ingress's HTTP pipeline. Order matters:
// client-sent x-fraise-* headers go first (an early header mutation runs
// before any filter), so ext_authz and the rate limiter only ever see
// identity headers extauthz set.
func httpConnectionManager(o Options) (*hcmv3.HttpConnectionManager, error) {
	authz := &extauthzv3.ExtAuthz{
		Services:            &extauthzv3.ExtAuthz_GrpcService{GrpcService: envoyGrpc(ClusterAuthz, o.AuthzTimeout)},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    false, // fail closed: no decision, no request
		// Fail closed with 503, not Envoy's default 403: a check that got
		// no answer is no verdict on the caller, who may retry.
		StatusOnError:          &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		IncludePeerCertificate: true,
		WithRequestBody: &extauthzv3.BufferSettings{
			MaxRequestBytes:     o.MaxRequestBytes,
			AllowPartialMessage: false,
			// Bytes, as the client sent them: as text, Envoy replaces
			// every byte that is not UTF-8 with '!', so extauthz would
			// decide on a body other than the one the core runs, and a
			// Flight descriptor (protobuf, not text) would hash to another
			// value than the one the core binds. Envoy 1.40 takes
			// pack_as_bytes from here, not from a route's override.
			PackAsBytes: true,
		},
	}
	rl := &ratelimitv3.RateLimit{
		Domain:                         o.RateLimitDomain,
		Timeout:                        durationpb.New(o.RateLimitTimeout),
		FailureModeDeny:                o.RateLimitFailureModeDeny,
		StatusOnError:                  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		RateLimitedAsResourceExhausted: true,
		// X-RateLimit-Limit, -Remaining and -Reset from the descriptor
		// statuses, on every answer, refused or not.
		EnableXRatelimitHeaders: ratelimitv3.RateLimit_DRAFT_VERSION_03,
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService:         envoyGrpc(ClusterRateLimit, o.RateLimitTimeout),
			TransportApiVersion: corev3.ApiVersion_V3,
		},
	}
	strip := &headermutationv3.HeaderMutation{Mutations: []*mutationv3.HeaderMutation{{
		Action: &mutationv3.HeaderMutation_RemoveOnMatch_{RemoveOnMatch: &mutationv3.HeaderMutation_RemoveOnMatch{
			KeyMatcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: IdentityHeaderPrefix}, IgnoreCase: true},
		}},
	}}}
	accessLog := accessLogConfig()
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:        "ingress",
		CodecType:         hcmv3.HttpConnectionManager_AUTO,
		UseRemoteAddress:  wrapperspb.Bool(true),
		GenerateRequestId: wrapperspb.Bool(true),
		// Only loopback peers are internal: they keep their x-request-id
		// and get x-envoy-internal; every other client is an edge client
		// whose request id is replaced. Explicit, because Envoy's default
		// (RFC 1918 trusted) is deprecated and changing.
		InternalAddressConfig: &hcmv3.HttpConnectionManager_InternalAddressConfig{CidrRanges: []*corev3.CidrRange{
			{AddressPrefix: "127.0.0.0", PrefixLen: wrapperspb.UInt32(8)},
			{AddressPrefix: "::1", PrefixLen: wrapperspb.UInt32(128)},
		}},
		// The upstream's Server header passes; Envoy names itself nowhere.
		ServerHeaderTransformation: hcmv3.HttpConnectionManager_PASS_THROUGH,
		// The limits bound what one client can make Envoy hold.
		MaxRequestHeadersKb: wrapperspb.UInt32(MaxRequestHeadersKB),
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout:                  durationpb.New(o.IdleTimeout),
			MaxHeadersCount:              wrapperspb.UInt32(MaxHeadersCount),
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		},
		Http2ProtocolOptions:  &corev3.Http2ProtocolOptions{MaxConcurrentStreams: wrapperspb.UInt32(MaxConcurrentStreams)},
		RequestHeadersTimeout: durationpb.New(o.RequestHeadersTimeout),
		StreamIdleTimeout:     durationpb.New(o.StreamIdleTimeout),
		// Routes match on the normalised path: /a/../graphql is /graphql,
		// //graphql is /graphql, and an escaped slash is refused rather than
		// guessed at.
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		EarlyHeaderMutationExtensions: []*corev3.TypedExtensionConfig{{
			Name: EarlyHeaderMutation, TypedConfig: mustAny(strip),
		}},
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: RouteName,
			ConfigSource: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			// Request trailers are not headers: the early header mutation
			// never sees them, and Envoy forwards them over HTTP/2. A gRPC
			// server takes trailers from a client for a protocol error on
			// the whole connection (grpc-go answers GOAWAY), so one client
			// could reset every stream Envoy has open to the core's Flight
			// port, other tenants' exports included; and x-fraise-* in them
			// would reach it unchecked. No API takes request trailers:
			// every one is dropped.
			{Name: FilterHeaderMutation, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&httpmutationv3.HeaderMutation{
				Mutations: &httpmutationv3.Mutations{RequestTrailersMutations: []*mutationv3.HeaderMutation{{
					Action: &mutationv3.HeaderMutation_RemoveOnMatch_{RemoveOnMatch: &mutationv3.HeaderMutation_RemoveOnMatch{
						KeyMatcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}},
					}},
				}}},
			})}},
			// ext_authz's max_request_bytes is no limit on its own: a body
			// that arrives with its end of stream in one piece (one HTTP/2
			// DATA frame) is not buffered, so it is not refused; extauthz is
			// shown its first max_request_bytes and the core gets it whole.
			// This filter counts every body on the routes that buffer one
			// for extauthz (GraphQL) and refuses it past the limit, 413,
			// before ext_authz sees it.
			{Name: FilterBodySizeLimit, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&bodysizev3.BodySizeLimit{
				MaxRequestBytes: wrapperspb.UInt64(uint64(o.MaxRequestBytes)),
			})}},
			{Name: FilterExtAuthz, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(authz)}},
			{Name: FilterRateLimit, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(rl)}},
			// No x-envoy-upstream-service-time and friends on responses, no
			// x-envoy-expected-rq-timeout-ms towards the core.
			{Name: FilterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{SuppressEnvoyHeaders: true})}},
		},
		AccessLog: []*accesslogv3.AccessLog{{
			Name: "envoy.access_loggers.stdout", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(accessLog)},
		}},
		LocalReplyConfig: localReplyConfig(),
	}
	observe(o, hcm)
	return hcm, nil
}

// FlagExtAuthz is the response flag Envoy sets on ext_authz's local
// replies, its denials and its errors (status_on_error) alike.
const FlagExtAuthz = "UAEX"

// localReplyConfig makes every answer the ingress writes itself (Envoy's
// local replies: its body limit, the rate limiter's refusal, an authz or
// rate limit service that did not answer, a core it could not reach or
// that timed out, a request it refused as malformed or too slow, the
// not_found route) GraphQL-shaped JSON labelled application/json, like
// every other refusal. Mappers apply to local replies only, so the core's
// own answers (admission's 503s among them) keep their bodies, and the
// first that matches applies. ext_authz's denials are local replies too:
// extauthz already shaped them, with the reason a mapper's body would
// replace, so after the one ext_authz reply extauthz did not write (503,
// the check failed) a mapper matches the rest to keep them as they are.
// Catch-alls for the other statuses at or over 500 and 400 come last.
func localReplyConfig() *hcmv3.LocalReplyConfig {
	retryAfter := []*corev3.HeaderValueOption{{
		Header:       &corev3.HeaderValue{Key: "retry-after", Value: UnavailableRetryAfter},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}}
	compare := func(op accesslogv3.ComparisonFilter_Op, code uint32, key string) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
			StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
				Op: op, Value: &corev3.RuntimeUInt32{DefaultValue: code, RuntimeKey: key},
			}},
		}}
	}
	status := func(code uint32, key string) *accesslogv3.AccessLogFilter {
		return compare(accesslogv3.ComparisonFilter_EQ, code, key)
	}
	extAuthz := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
		ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: []string{FlagExtAuthz}},
	}}
	// asJSON writes the reply's body as it is, saying it is JSON: Envoy
	// labels every local reply's body text/plain otherwise.
	asJSON := func() *corev3.SubstitutionFormatString {
		return &corev3.SubstitutionFormatString{
			Format:      &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: inline("%LOCAL_REPLY_BODY%")},
			ContentType: "application/json",
		}
	}
	// A mapper with no body leaves the reply as it is.
	mapper := func(f *accesslogv3.AccessLogFilter, body string, headers []*corev3.HeaderValueOption) *hcmv3.ResponseMapper {
		m := &hcmv3.ResponseMapper{Filter: f}
		if body != "" {
			m.Body, m.HeadersToAdd, m.BodyFormatOverride = inline(body), headers, asJSON()
		}
		return m
	}
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{
		mapper(&accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{AndFilter: &accesslogv3.AndFilter{
			Filters: []*accesslogv3.AccessLogFilter{extAuthz, status(503, "fraise.authz_error_status")},
		}}}, UnavailableBody, retryAfter),
		mapper(extAuthz, "", nil), // extauthz's own answer, as it wrote it
		// The not_found route's direct response: its body is JSON already.
		{Filter: status(404, "fraise.not_found_status"), BodyFormatOverride: asJSON()},
		// A client too slow to send its headers (request_headers_timeout)
		// or its body (stream_idle_timeout).
		mapper(status(408, "fraise.request_timeout_status"), RequestTimeoutBody, nil),
		mapper(status(413, "fraise.too_large_status"), TooLargeBody, nil),
		mapper(status(429, "fraise.rate_limited_status"), RateLimitedBody, nil),
		mapper(status(431, "fraise.headers_too_large_status"), HeadersTooLargeBody, nil),
		mapper(status(502, "fraise.bad_gateway_status"), UnavailableBody, retryAfter),
		mapper(status(503, "fraise.unavailable_status"), UnavailableBody, retryAfter),
		mapper(status(504, "fraise.gateway_timeout_status"), TimeoutBody, nil),
		// Whatever else Envoy refuses itself: 400 (an escaped slash in the
		// path, a header with underscores, a malformed request), 426 (HTTP/1.0)
		// and any error of its own.
		mapper(compare(accesslogv3.ComparisonFilter_GE, 500, "fraise.internal_status"), InternalBody, nil),
		mapper(compare(accesslogv3.ComparisonFilter_GE, 400, "fraise.bad_request_status"), BadRequestBody, nil),
	}}
}

// rateLimits are the route actions for RateLimitDescriptors: values come
// from identity headers extauthz set and the client could not.
func rateLimits() []*routev3.RateLimit {
	var rls []*routev3.RateLimit
	for _, d := range RateLimitDescriptors() {
		rl := &routev3.RateLimit{}
		for _, e := range d {
			rl.Actions = append(rl.Actions, &routev3.RateLimit_Action{
				ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
					HeaderName: e.Header, DescriptorKey: e.Key,
				}},
			})
		}
		rls = append(rls, rl)
	}
	return rls
}

func routeConfig(o Options) *routev3.RouteConfiguration {
	// ext_authz buffers the body (the filter's with_request_body) on the
	// GraphQL route only: every other route turns buffering or the filter
	// off per route.
	routes := []*routev3.Route{{
		Name:  "graphql",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: GraphQLPath}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterCoreHTTP},
			Timeout:          durationpb.New(o.GraphQLTimeout),
			RateLimits:       rateLimits(),
		}},
	}}
	if o.CoreFlightAddr != "" {
		// The calls whose one request message is a FlightDescriptor are
		// unary: buffering that message ends with the call's end of
		// stream, and shows extauthz the dataset a policy may restrict
		// (as bytes, the filter's pack_as_bytes).
		for _, m := range FlightDescribedMethods {
			routes = append(routes, &routev3.Route{
				Name: "flight_" + m,
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Path{Path: FlightPrefix + m},
					Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
				},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterCoreFlight},
					Timeout:          durationpb.New(o.RouteTimeout),
					RateLimits:       rateLimits(),
				}},
				TypedPerFilterConfig: map[string]*anypb.Any{
					FilterBodySizeLimit: noBodyLimit(),
					FilterExtAuthz: mustAny(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
						CheckSettings: &extauthzv3.CheckSettings{WithRequestBody: &extauthzv3.BufferSettings{
							MaxRequestBytes: FlightDescriptorMaxBytes,
							// A longer descriptor is checked on what
							// arrived: unread, its dataset is "", which
							// only an every-dataset role may call.
							AllowPartialMessage: true,
						}},
					}}),
				},
			})
		}
		routes = append(routes, &routev3.Route{
			Name: "flight",
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: FlightPrefix},
				Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
			},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterCoreFlight},
				Timeout:          durationpb.New(0), // streams last as long as the export
				RateLimits:       rateLimits(),
			}},
			// The other Flight calls stream (DoGet's answer, DoPut's and
			// DoExchange's requests, Handshake both ways): buffering would
			// hold them until the end of a stream that waits on the answer.
			// ext_authz decides on the call's metadata alone.
			TypedPerFilterConfig: map[string]*anypb.Any{
				FilterBodySizeLimit: noBodyLimit(), // DoPut uploads are as large as the data
				FilterExtAuthz: mustAny(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
					CheckSettings: &extauthzv3.CheckSettings{DisableRequestBodyBuffering: true},
				}}),
			},
		})
	}
	routes = append(routes, &routev3.Route{
		// The console's pages and APIs, on the core's HTTP listener:
		// /console and everything below it, never /consoleX. extauthz
		// checks them as any request, body included (the APIs' JSON).
		Name:  "console",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: ConsolePrefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterCoreHTTP},
			Timeout:          durationpb.New(o.GraphQLTimeout),
			RateLimits:       rateLimits(),
		}},
	})
	routes = append(routes, &routev3.Route{
		Name:  "not_found",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 404, Body: inline(NotFoundBody),
		}},
		// Unrouted paths (health, admin, metrics, anything else) are
		// answered 404 without asking extauthz: there is nothing to protect.
		TypedPerFilterConfig: map[string]*anypb.Any{
			FilterBodySizeLimit: noBodyLimit(), // 404 whatever the body
			FilterExtAuthz:      mustAny(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}}),
		},
	})
	return &routev3.RouteConfiguration{
		Name: RouteName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name: "fraise", Domains: []string{"*"}, Routes: routes,
		}},
	}
}

// noBodyLimit turns the body size limit off on a route that does not
// buffer the body for extauthz.
func noBodyLimit() *anypb.Any { return mustAny(&routev3.FilterConfig{Disabled: true}) }

func tlsSocket(m proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(m)}}
}

func downstreamTLS(o Options) *corev3.TransportSocket {
	return tlsSocket(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			// The secret SecretListener, over ADS: Envoy watches the files
			// an SDS secret names, and not those of a static one.
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretListener, SdsConfig: ads()}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file(o.CACert),
			}},
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
	})
}

// upstreamCertificate is the certificate Envoy presents to every upstream.
func upstreamCertificate(o Options) *tlsv3.TlsCertificate {
	return &tlsv3.TlsCertificate{CertificateChain: file(o.UpstreamCert), PrivateKey: file(o.UpstreamKey)}
}

// upstreamSecret is upstreamCertificate as the SDS secret SecretUpstream.
func upstreamSecret(o Options) *tlsv3.Secret {
	return &tlsv3.Secret{Name: SecretUpstream, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: watched(upstreamCertificate(o))}}
}

// watched returns c watching the directory its certificate and key share,
// when they share one named absolutely: Envoy reloads a served secret's
// files on a move of the files themselves, or, with watched_directory, on
// any move in that directory, which is how Kubernetes renews a mounted
// Secret (its ..data link swapped, the files left in place). Otherwise
// Envoy's default (the files' own directories, the files' own moves)
// stays.
func watched(c *tlsv3.TlsCertificate) *tlsv3.TlsCertificate {
	cert, key := c.GetCertificateChain().GetFilename(), c.GetPrivateKey().GetFilename()
	if dir := filepath.Dir(cert); filepath.IsAbs(cert) && dir == filepath.Dir(key) {
		c.WatchedDirectory = &corev3.WatchedDirectory{Path: dir}
	}
	return c
}

// listenerSecret is the listener's certificate as the SDS secret
// SecretListener.
func listenerSecret(o Options) *tlsv3.Secret {
	return &tlsv3.Secret{Name: SecretListener, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: watched(&tlsv3.TlsCertificate{
		CertificateChain: file(o.ServerCert), PrivateKey: file(o.ServerKey),
	})}}
}

// upstreamTLS is the transport socket of a cluster that speaks mTLS. The
// certificate it presents is the secret SecretUpstream, served over ADS
// beside the clusters, unless inline (the xDS bootstrap's own cluster,
// which must connect before any secret can arrive): rotating the
// certificate then updates the secret in place and leaves the clusters as
// they are. Envoy replaces a cluster whose configuration changes, and
// resets the requests in flight on the one it replaces (ext_authz's checks
// among them, which would fail closed with 503).
func upstreamTLS(o Options, inline bool) *corev3.TransportSocket {
	ctc := &tlsv3.CommonTlsContext{
		TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file(o.UpstreamCA),
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o.UpstreamServerName}},
			}},
		}},
	}
	if inline {
		ctc.TlsCertificates = []*tlsv3.TlsCertificate{upstreamCertificate(o)}
	} else {
		ctc.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: SecretUpstream, SdsConfig: ads()}}
	}
	return tlsSocket(&tlsv3.UpstreamTlsContext{Sni: o.UpstreamServerName, CommonTlsContext: ctc})
}

// ads is the config source of a resource served over the aggregated
// discovery stream.
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// UpstreamIdleTimeout closes Envoy's idle upstream connections before the
// servers behind them do (the core's close theirs after two minutes idle):
// a request Envoy sent on a connection the core was closing that instant
// would fail.
const UpstreamIdleTimeout = time.Minute

// upstreamHTTPOptions is a cluster's protocol, HTTP/2 or HTTP/1.1, said
// explicitly, and its idle timeout.
func upstreamHTTPOptions(h2 bool) *httpv3.HttpProtocolOptions {
	explicit := &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
	}
	if h2 {
		explicit.ProtocolConfig = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
	}
	return &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(UpstreamIdleTimeout)},
		UpstreamProtocolOptions:   &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit},
	}
}
