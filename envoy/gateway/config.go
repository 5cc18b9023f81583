package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	connlimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/fraise-dev/fraise/envoy"
)

// plan is what the gateway executes, read from the generated resources.
type plan struct {
	tls *tls.Config

	maxConns       int // 0: unlimited
	maxHeaderBytes int
	maxHeaders     int
	maxStreams     int
	internal       []*net.IPNet // internal_address_config
	normalizePath  bool
	mergeSlashes   bool
	rejectEscaped  bool

	stripPrefixes []string // lower-case header name prefixes removed on arrival
	stripExact    []string

	authz *authzPlan
	rl    *rateLimitPlan

	routes   []route
	clusters map[string]*clusterPlan

	localReplies []localReply

	// localPrincipal is the listener certificate's principal, Envoy's
	// destination principal in a CheckRequest.
	localPrincipal string
}

type authzPlan struct {
	cluster       string
	timeout       time.Duration
	failureAllow  bool
	statusOnError int
	body          *bodyPlan // the filter's with_request_body; nil: none
	peerCert      bool
}

// bodyPlan is an ext_authz with_request_body: how much of the request the
// check is shown, whether a longer one is shown in part (else 413), and
// whether it goes as bytes (raw_body) rather than text (body).
type bodyPlan struct {
	max     uint32
	partial bool
	raw     bool
}

func compileBody(b *extauthzv3.BufferSettings) *bodyPlan {
	if b == nil {
		return nil
	}
	return &bodyPlan{max: b.GetMaxRequestBytes(), partial: b.GetAllowPartialMessage(), raw: b.GetPackAsBytes()}
}

type rateLimitPlan struct {
	cluster             string
	domain              string
	timeout             time.Duration
	failureDeny         bool
	statusOnError       int
	asResourceExhausted bool
	xRateLimitHeaders   bool
}

type route struct {
	name        string
	prefix      string
	path        string // exact match when set
	grpcOnly    bool
	cluster     string
	timeout     time.Duration
	direct      *directResponse
	rateLimits  [][]headerAction // each: one descriptor's entries
	noAuthzBody bool
	authzBody   *bodyPlan // the route's with_request_body, over the filter's
	noAuthz     bool
}

type headerAction struct{ header, key string }

type directResponse struct {
	status int
	body   string
}

type clusterPlan struct {
	name string
	addr string
	h2   bool
	idle time.Duration // the protocol options' idle_timeout; 0: the transport's default
	tls  *tls.Config
}

// localReply is one local reply mapper: it matches a status (0: any) and
// a response flag (nil: any), and replaces the body when hasBody.
type localReply struct {
	status      int
	flags       []string
	body        string
	hasBody     bool
	contentType string
	headers     []*corev3.HeaderValueOption
}

// compileFilter reads the mapper filters Fraise's configuration uses: an
// equal status code, response flags, and the conjunction of those.
func (lr *localReply) compileFilter(f *accesslogv3.AccessLogFilter) error {
	switch {
	case f.GetStatusCodeFilter() != nil:
		c := f.GetStatusCodeFilter().GetComparison()
		if c.GetOp() != accesslogv3.ComparisonFilter_EQ || lr.status != 0 {
			return errors.New("gateway: local reply mappers match one status, for equality")
		}
		lr.status = int(c.GetValue().GetDefaultValue())
	case f.GetResponseFlagFilter() != nil:
		if len(f.GetResponseFlagFilter().GetFlags()) == 0 || lr.flags != nil {
			return errors.New("gateway: local reply mappers match one list of response flags, not every flag")
		}
		lr.flags = f.GetResponseFlagFilter().GetFlags()
	case f.GetAndFilter() != nil:
		for _, sub := range f.GetAndFilter().GetFilters() {
			if err := lr.compileFilter(sub); err != nil {
				return err
			}
		}
	default:
		return errors.New("gateway: only status-code and response-flag local reply mappers are supported")
	}
	return nil
}

// matches reports whether a local reply of status, carrying response
// flag ("" for none), is this mapper's.
func (lr *localReply) matches(status int, flag string) bool {
	return (lr.status == 0 || lr.status == status) && (lr.flags == nil || (flag != "" && slices.Contains(lr.flags, flag)))
}

func unpack[T proto.Message](a *anypb.Any, m T) (T, error) {
	if a == nil {
		return m, errors.New("missing typed config")
	}
	if err := a.UnmarshalTo(m); err != nil {
		return m, err
	}
	return m, nil
}

// compile reads res into a plan, refusing what the gateway cannot execute
// rather than silently doing something else than Envoy would.
func compile(res *envoy.Resources) (*plan, error) {
	if len(res.Listeners) != 1 || len(res.Listeners[0].GetFilterChains()) != 1 {
		return nil, errors.New("gateway: want exactly one listener with one filter chain")
	}
	fc := res.Listeners[0].GetFilterChains()[0]
	p := &plan{clusters: map[string]*clusterPlan{}}
	dtc, err := unpack(fc.GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	if err != nil {
		return nil, fmt.Errorf("gateway: listener TLS: %w", err)
	}
	if p.tls, err = downstreamTLS(dtc); err != nil {
		return nil, err
	}
	if leaf := p.tls.Certificates[0].Leaf; leaf != nil {
		p.localPrincipal = principal(leaf)
	}
	var hcm *hcmv3.HttpConnectionManager
	for i, f := range fc.GetFilters() {
		last := i == len(fc.GetFilters())-1
		switch {
		case f.GetName() == envoy.FilterConnectionLimit && !last:
			cl, err := unpack(f.GetTypedConfig(), &connlimitv3.ConnectionLimit{})
			if err != nil {
				return nil, fmt.Errorf("gateway: connection limit: %w", err)
			}
			if cl.GetDelay().AsDuration() != 0 || cl.GetRuntimeEnabled() != nil {
				return nil, errors.New("gateway: connection limit: delay and runtime flags are not supported")
			}
			p.maxConns = int(cl.GetMaxConnections().GetValue())
		case f.GetName() == envoy.FilterHTTPConnectionManager && last:
			if hcm, err = unpack(f.GetTypedConfig(), &hcmv3.HttpConnectionManager{}); err != nil {
				return nil, fmt.Errorf("gateway: HTTP connection manager: %w", err)
			}
		default:
			return nil, fmt.Errorf("gateway: unsupported network filter %s at position %d", f.GetName(), i)
		}
	}
	if hcm == nil {
		return nil, errors.New("gateway: no HTTP connection manager")
	}
	// Envoy's defaults where the configuration says nothing.
	p.maxHeaderBytes, p.maxHeaders, p.maxStreams = 60<<10, 100, 100
	if v := hcm.GetMaxRequestHeadersKb(); v != nil {
		p.maxHeaderBytes = int(v.GetValue()) << 10
	}
	if v := hcm.GetCommonHttpProtocolOptions().GetMaxHeadersCount(); v != nil {
		p.maxHeaders = int(v.GetValue())
	}
	if v := hcm.GetHttp2ProtocolOptions().GetMaxConcurrentStreams(); v != nil {
		p.maxStreams = int(v.GetValue())
	}
	if hcm.GetPreserveExternalRequestId() || hcm.GetXffNumTrustedHops() != 0 || !hcm.GetUseRemoteAddress().GetValue() {
		return nil, errors.New("gateway: want use_remote_address, no trusted hops and no preserved external request ids")
	}
	for _, c := range hcm.GetInternalAddressConfig().GetCidrRanges() {
		_, n, err := net.ParseCIDR(c.GetAddressPrefix() + "/" + strconv.Itoa(int(c.GetPrefixLen().GetValue())))
		if err != nil {
			return nil, fmt.Errorf("gateway: internal address: %w", err)
		}
		p.internal = append(p.internal, n)
	}
	p.normalizePath = hcm.GetNormalizePath().GetValue()
	p.mergeSlashes = hcm.GetMergeSlashes()
	switch hcm.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		p.rejectEscaped = true
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	default:
		return nil, fmt.Errorf("gateway: unsupported path_with_escaped_slashes_action %v", hcm.GetPathWithEscapedSlashesAction())
	}
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		hm, err := unpack(ext.GetTypedConfig(), &headermutationv3.HeaderMutation{})
		if err != nil {
			return nil, fmt.Errorf("gateway: early header mutation: %w", err)
		}
		for _, m := range hm.GetMutations() {
			switch {
			case m.GetRemove() != "":
				p.stripExact = append(p.stripExact, strings.ToLower(m.GetRemove()))
			case m.GetRemoveOnMatch().GetKeyMatcher().GetPrefix() != "":
				p.stripPrefixes = append(p.stripPrefixes, strings.ToLower(m.GetRemoveOnMatch().GetKeyMatcher().GetPrefix()))
			default:
				return nil, fmt.Errorf("gateway: unsupported early header mutation %v", m)
			}
		}
	}
	for _, f := range hcm.GetHttpFilters() {
		switch f.GetName() {
		case envoy.FilterExtAuthz:
			ea, err := unpack(f.GetTypedConfig(), &extauthzv3.ExtAuthz{})
			if err != nil {
				return nil, fmt.Errorf("gateway: ext_authz: %w", err)
			}
			gs := ea.GetGrpcService()
			if gs.GetEnvoyGrpc() == nil {
				return nil, errors.New("gateway: ext_authz must use an Envoy gRPC cluster")
			}
			p.authz = &authzPlan{
				cluster: gs.GetEnvoyGrpc().GetClusterName(), timeout: gs.GetTimeout().AsDuration(),
				failureAllow: ea.GetFailureModeAllow(), statusOnError: 403, peerCert: ea.GetIncludePeerCertificate(),
			}
			if c := ea.GetStatusOnError().GetCode(); c != 0 {
				p.authz.statusOnError = int(c)
			}
			p.authz.body = compileBody(ea.GetWithRequestBody())
		case envoy.FilterRateLimit:
			rl, err := unpack(f.GetTypedConfig(), &ratelimitv3.RateLimit{})
			if err != nil {
				return nil, fmt.Errorf("gateway: ratelimit: %w", err)
			}
			p.rl = &rateLimitPlan{
				cluster: rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName(),
				domain:  rl.GetDomain(), timeout: rl.GetTimeout().AsDuration(), failureDeny: rl.GetFailureModeDeny(),
				statusOnError: http.StatusInternalServerError, asResourceExhausted: rl.GetRateLimitedAsResourceExhausted(),
				xRateLimitHeaders: rl.GetEnableXRatelimitHeaders() == ratelimitv3.RateLimit_DRAFT_VERSION_03,
			}
			if c := rl.GetStatusOnError().GetCode(); c != 0 {
				p.rl.statusOnError = int(c)
			}
			if p.rl.cluster == "" {
				return nil, errors.New("gateway: ratelimit must use an Envoy gRPC cluster")
			}
		case envoy.FilterRouter:
		default:
			return nil, fmt.Errorf("gateway: unsupported HTTP filter %s", f.GetName())
		}
	}
	for _, m := range hcm.GetLocalReplyConfig().GetMappers() {
		lr := localReply{contentType: m.GetBodyFormatOverride().GetContentType(), headers: m.GetHeadersToAdd()}
		if m.GetBody() != nil {
			lr.body, lr.hasBody = m.GetBody().GetInlineString(), true
		}
		if err := lr.compileFilter(m.GetFilter()); err != nil {
			return nil, err
		}
		p.localReplies = append(p.localReplies, lr)
	}
	var rc *routev3.RouteConfiguration
	if rds := hcm.GetRds(); rds != nil {
		for _, r := range res.Routes {
			if r.GetName() == rds.GetRouteConfigName() {
				rc = r
			}
		}
	} else {
		rc = hcm.GetRouteConfig()
	}
	if rc == nil || len(rc.GetVirtualHosts()) != 1 {
		return nil, errors.New("gateway: want one route configuration with one virtual host")
	}
	for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
		rt, err := compileRoute(r)
		if err != nil {
			return nil, err
		}
		p.routes = append(p.routes, rt)
	}
	for _, c := range res.Clusters {
		cp, err := compileCluster(c)
		if err != nil {
			return nil, err
		}
		p.clusters[c.GetName()] = cp
	}
	return p, nil
}

func compileRoute(r *routev3.Route) (route, error) {
	m := r.GetMatch()
	rt := route{name: r.GetName(), prefix: m.GetPrefix(), path: m.GetPath(), grpcOnly: m.GetGrpc() != nil}
	if m.GetPrefix() == "" && m.GetPath() == "" {
		return rt, fmt.Errorf("gateway: route %s: only prefix and path matches are supported", r.GetName())
	}
	if len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 || m.GetCaseSensitive() != nil || m.GetRuntimeFraction() != nil {
		return rt, fmt.Errorf("gateway: route %s: header, query, case and runtime matches are not supported", r.GetName())
	}
	if a, ok := r.GetTypedPerFilterConfig()[envoy.FilterExtAuthz]; ok {
		per, err := unpack(a, &extauthzv3.ExtAuthzPerRoute{})
		if err != nil {
			return rt, err
		}
		rt.noAuthz = per.GetDisabled()
		rt.noAuthzBody = per.GetCheckSettings().GetDisableRequestBodyBuffering()
		rt.authzBody = compileBody(per.GetCheckSettings().GetWithRequestBody())
	}
	if dr := r.GetDirectResponse(); dr != nil {
		rt.direct = &directResponse{status: int(dr.GetStatus()), body: dr.GetBody().GetInlineString()}
		return rt, nil
	}
	ra := r.GetRoute()
	if ra == nil || ra.GetCluster() == "" {
		return rt, fmt.Errorf("gateway: route %s: want a cluster or a direct response", r.GetName())
	}
	rt.cluster, rt.timeout = ra.GetCluster(), ra.GetTimeout().AsDuration()
	for _, rl := range ra.GetRateLimits() {
		var d []headerAction
		for _, a := range rl.GetActions() {
			rh := a.GetRequestHeaders()
			if rh == nil || rh.GetSkipIfAbsent() {
				return rt, fmt.Errorf("gateway: route %s: only request_headers rate-limit actions are supported", r.GetName())
			}
			d = append(d, headerAction{header: strings.ToLower(rh.GetHeaderName()), key: rh.GetDescriptorKey()})
		}
		rt.rateLimits = append(rt.rateLimits, d)
	}
	return rt, nil
}

func compileCluster(c *clusterv3.Cluster) (*clusterPlan, error) {
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		return nil, fmt.Errorf("gateway: cluster %s: want exactly one endpoint", c.GetName())
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	cp := &clusterPlan{name: c.GetName(), addr: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))}
	if a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok {
		po, err := unpack(a, &httpv3.HttpProtocolOptions{})
		if err != nil {
			return nil, fmt.Errorf("gateway: cluster %s protocol options: %w", c.GetName(), err)
		}
		cp.h2 = po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
		cp.idle = po.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration()
	}
	if ts := c.GetTransportSocket(); ts != nil {
		utc, err := unpack(ts.GetTypedConfig(), &tlsv3.UpstreamTlsContext{})
		if err != nil {
			return nil, fmt.Errorf("gateway: cluster %s TLS: %w", c.GetName(), err)
		}
		if cp.tls, err = upstreamTLS(utc); err != nil {
			return nil, fmt.Errorf("gateway: cluster %s: %w", c.GetName(), err)
		}
	}
	return cp, nil
}

func filename(ds *corev3.DataSource) (string, error) {
	if f := ds.GetFilename(); f != "" {
		return f, nil
	}
	return "", errors.New("only filename data sources are supported")
}

func loadPair(tc []*tlsv3.TlsCertificate) (tls.Certificate, error) {
	if len(tc) != 1 {
		return tls.Certificate{}, errors.New("want one TLS certificate")
	}
	cert, err := filename(tc[0].GetCertificateChain())
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := filename(tc[0].GetPrivateKey())
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(cert, key)
}

func loadPool(vc *tlsv3.CertificateValidationContext) (*x509.CertPool, error) {
	f, err := filename(vc.GetTrustedCa())
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(f)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", f)
	}
	return pool, nil
}

func minVersion(p *tlsv3.TlsParameters) uint16 {
	switch p.GetTlsMinimumProtocolVersion() {
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13
	default:
		return tls.VersionTLS12
	}
}

func downstreamTLS(d *tlsv3.DownstreamTlsContext) (*tls.Config, error) {
	ctc := d.GetCommonTlsContext()
	cert, err := loadPair(ctc.GetTlsCertificates())
	if err != nil {
		return nil, fmt.Errorf("gateway: listener certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion(ctc.GetTlsParams()), NextProtos: ctc.GetAlpnProtocols()}
	if v := ctc.GetTlsParams().GetTlsMaximumProtocolVersion(); v == tlsv3.TlsParameters_TLSv1_2 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	if vc := ctc.GetValidationContext(); vc != nil {
		if cfg.ClientCAs, err = loadPool(vc); err != nil {
			return nil, fmt.Errorf("gateway: listener CA: %w", err)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if d.GetRequireClientCertificate().GetValue() {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

func upstreamTLS(u *tlsv3.UpstreamTlsContext) (*tls.Config, error) {
	ctc := u.GetCommonTlsContext()
	cert, err := loadPair(ctc.GetTlsCertificates())
	if err != nil {
		return nil, err
	}
	pool, err := loadPool(ctc.GetValidationContext())
	if err != nil {
		return nil, err
	}
	name := u.GetSni()
	for _, m := range ctc.GetValidationContext().GetMatchTypedSubjectAltNames() {
		if e := m.GetMatcher().GetExact(); e != "" {
			name = e
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: name, MinVersion: minVersion(ctc.GetTlsParams())}, nil
}
