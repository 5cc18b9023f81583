package envoy

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// TraceServiceName is the service.name of the spans the ingress exports:
// the root of every trace extauthz and the core continue.
const TraceServiceName = "fraise-ingress"

// AccessLogFields are the fields of the ingress's access log, one JSON
// object a line on Envoy's stdout for every request, each with the Envoy
// command operator that fills it. Numbers (status, durations, bytes) are
// JSON numbers; a value Envoy does not have is "-" (or null). The path is
// logged without its query: a GraphQL GET carries its document and
// variables there, which are the tenant's data.
var AccessLogFields = map[string]string{
	"time":          "%START_TIME%", // RFC 3339, UTC, milliseconds
	"request_id":    "%REQ(X-REQUEST-ID)%",
	"trace_id":      "%TRACE_ID%", // the W3C trace id of the spans, when tracing
	"span_id":       "%SPAN_ID%",  // the ingress's server span
	"method":        "%REQ(:METHOD)%",
	"authority":     "%REQ(:AUTHORITY)%",
	"path":          "%PATH(WQ)%", // normalised, as routed, without the query
	"protocol":      "%PROTOCOL%",
	"status":        "%RESPONSE_CODE%",
	"grpc_status":   "%GRPC_STATUS_NUMBER%", // Flight calls
	"flags":         "%RESPONSE_FLAGS%",     // UAEX: ext_authz answered; RL: rate limited; UF, UT...
	"details":       "%RESPONSE_CODE_DETAILS%",
	"duration":      "%DURATION%", // milliseconds, first byte in to last byte out
	"bytes_in":      "%BYTES_RECEIVED%",
	"bytes_out":     "%BYTES_SENT%",
	"route":         "%ROUTE_NAME%",
	"upstream":      "%UPSTREAM_CLUSTER%",
	"upstream_host": "%UPSTREAM_HOST%",
	"client":        "%DOWNSTREAM_REMOTE_ADDRESS%",
	// The client certificate the connection presented (required: the
	// listener is mTLS): its RFC 2253 subject and its SANs.
	"client_subject": "%DOWNSTREAM_PEER_SUBJECT%",
	"client_uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
	"client_dns_san": "%DOWNSTREAM_PEER_DNS_SAN%",
	"user_agent":     "%REQ(USER-AGENT)%",
	// The identity extauthz decided on: it sets these headers on allowed
	// requests, after the ingress removed any the client sent.
	"tenant":  "%REQ(" + TenantHeader + ")%",
	"subject": "%REQ(" + SubjectHeader + ")%",
	"tier":    "%REQ(" + TierHeader + ")%",
	"op":      "%REQ(" + OpHeader + ")%",
}

// accessLogConfig is the stdout access log in AccessLogFields' format.
func accessLogConfig() *streamv3.StdoutAccessLog {
	fields := make(map[string]*structpb.Value, len(AccessLogFields))
	for k, v := range AccessLogFields {
		fields[k] = structpb.NewStringValue(v)
	}
	return &streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: fields}},
	}}}
}

// observe sets what ties a request's traces and logs together: the
// request id on every response (a client quotes it, an operator finds the
// access log line and the trace by it) and, with a collector, Envoy's
// OpenTelemetry tracer. Envoy starts each trace (or continues a caller's
// W3C traceparent), and passes it to ext_authz and the rate limiter in
// their gRPC metadata and to the core in traceparent, which extauthz's and
// the core's servers continue.
func observe(o Options, hcm *hcmv3.HttpConnectionManager) {
	hcm.AlwaysSetRequestIdInResponse = true
	if o.OTLPEndpoint == "" {
		return
	}
	hcm.Tracing = &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: o.TraceSamplePercent},
		Provider: &tracev3.Tracing_Http{Name: TracerOpenTelemetry, ConfigType: &tracev3.Tracing_Http_TypedConfig{
			TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{GrpcService: envoyGrpc(ClusterOTel, time.Second), ServiceName: TraceServiceName}),
		}},
	}
}
