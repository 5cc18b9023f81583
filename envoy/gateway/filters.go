package gateway

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fraise-dev/fraise/envoy"
)

// checkAuthz asks extauthz about r, filling the CheckRequest as Envoy fills
// it, and applies the answer. It returns false when it has replied.
func (g *Gateway) checkAuthz(w http.ResponseWriter, r *http.Request, rt *route, isGRPC bool, respHeaders http.Header) (int, bool) {
	a := g.p.authz
	var body []byte
	// A route's with_request_body overrides the filter's, as in Envoy;
	// disable_request_body_buffering turns either off.
	bp := a.body
	if rt.authzBody != nil {
		bp = rt.authzBody
	}
	buffered := bp != nil && !rt.noAuthzBody
	partial := false
	if buffered {
		b, complete, err := readBody(r, bp.max)
		if err != nil {
			g.localReply(w, isGRPC, http.StatusBadRequest, "", nil, false, "")
			return http.StatusBadRequest, false
		}
		if !complete && !bp.partial {
			// Envoy's buffer limit answers 413 before ext_authz is asked.
			g.localReply(w, isGRPC, http.StatusRequestEntityTooLarge, "Payload Too Large", nil, false, "")
			return http.StatusRequestEntityTooLarge, false
		}
		body, partial = b, !complete
	}
	// Envoy adds x-envoy-auth-partial-body only when body data arrived.
	req := g.checkRequest(r, body, buffered && body != nil, partial, buffered && bp.raw)
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	resp, err := g.authz.Check(ctx, req)
	if err == nil && resp.GetErrorResponse() != nil {
		// An error_response is an error, not a denial: the failure mode
		// decides, and its status (or status_on_error), headers and body
		// make the reply.
		if a.failureAllow {
			return 0, true
		}
		e := resp.GetErrorResponse()
		status := int(e.GetStatus().GetCode())
		if status == 0 {
			status = a.statusOnError
		}
		return g.replyDenied(w, isGRPC, status, e.GetHeaders(), e.GetBody()), false
	}
	if err != nil {
		if a.failureAllow {
			return 0, true
		}
		g.log.Warn("ext_authz failed; refusing (fail closed)", "request_id", r.Header.Get("x-request-id"), "err", err)
		g.localReply(w, isGRPC, a.statusOnError, "", nil, false, envoy.FlagExtAuthz)
		return a.statusOnError, false
	}
	if resp.GetStatus().GetCode() != int32(code.Code_OK) {
		d := resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden
		}
		return g.replyDenied(w, isGRPC, status, d.GetHeaders(), d.GetBody()), false
	}
	ok := resp.GetOkResponse()
	for _, hv := range ok.GetHeaders() {
		applyHeader(r.Header, hv)
	}
	for _, k := range ok.GetHeadersToRemove() {
		// Envoy never lets ext_authz remove pseudo-headers or Host.
		if !strings.HasPrefix(k, ":") && !strings.EqualFold(k, "host") {
			r.Header.Del(k)
		}
	}
	for _, hv := range ok.GetResponseHeadersToAdd() {
		applyHeader(respHeaders, hv)
	}
	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		q := r.URL.Query()
		for _, qp := range ok.GetQueryParametersToSet() {
			q.Set(qp.GetKey(), qp.GetValue())
		}
		for _, k := range ok.GetQueryParametersToRemove() {
			q.Del(k)
		}
		r.URL.RawQuery = q.Encode()
	}
	return 0, true
}

// replyDenied sends a denial as Envoy sends it: the status, headers and body
// extauthz chose, unchanged (for gRPC, as a trailers-only reply).
// replyDenied answers with ext_authz's denial (or error response): a local
// reply, as in Envoy, so the local reply mappers see it, with the flag
// Envoy sets on it.
func (g *Gateway) replyDenied(w http.ResponseWriter, isGRPC bool, status int, headers []*corev3.HeaderValueOption, body string) int {
	h := http.Header{}
	for _, hv := range headers {
		applyHeader(h, hv)
	}
	g.localReply(w, isGRPC, status, body, h, false, envoy.FlagExtAuthz)
	return status
}

func headerValue(h *corev3.HeaderValue) string {
	if v := h.GetValue(); v != "" {
		return v
	}
	return string(h.GetRawValue())
}

// applyHeader applies one HeaderValueOption as Envoy's ext_authz filter
// does: the deprecated append=true joins the value to an existing header
// with a comma (appendCopy); APPEND_IF_EXISTS_OR_ADD adds another header
// line (addCopy); the other actions set, add if absent or overwrite.
func applyHeader(h http.Header, hv *corev3.HeaderValueOption) {
	k, v := http.CanonicalHeaderKey(hv.GetHeader().GetKey()), headerValue(hv.GetHeader())
	//lint:ignore SA1019 Envoy still honours the deprecated boolean when it is set, so must we.
	if appendFlag := hv.GetAppend(); appendFlag != nil {
		if !appendFlag.GetValue() {
			h.Set(k, v)
			return
		}
		if old := h.Values(k); len(old) > 0 {
			h.Set(k, strings.Join(old, ",")+","+v)
		} else {
			h.Set(k, v)
		}
		return
	}
	switch hv.GetAppendAction() {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		h.Add(k, v)
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if len(h.Values(k)) == 0 {
			h.Set(k, v)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if len(h.Values(k)) > 0 {
			h.Set(k, v)
		}
	default:
		h.Set(k, v)
	}
}

// checkRequest builds the CheckRequest Envoy's ext_authz filter sends for r.
func (g *Gateway) checkRequest(r *http.Request, body []byte, buffered, partial, raw bool) *authv3.CheckRequest {
	headers := make(map[string]string, len(r.Header)+5)
	for k, vs := range r.Header {
		// Envoy merges repeated headers with a comma.
		headers[strings.ToLower(k)] = sanitizeUTF8(strings.Join(vs, ","))
	}
	const scheme = "https"
	path := r.URL.RequestURI()
	headers[":method"], headers[":path"], headers[":authority"], headers[":scheme"] = r.Method, path, r.Host, scheme
	delete(headers, "host")
	if buffered {
		headers["x-envoy-auth-partial-body"] = strconv.FormatBool(partial)
	}
	src := &authv3.AttributeContext_Peer{Address: sockAddr(r.RemoteAddr)}
	var sni string
	if r.TLS != nil {
		sni = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			c := r.TLS.PeerCertificates[0]
			src.Principal = principal(c)
			if g.p.authz.peerCert {
				src.Certificate = urlEncodedPEM(c)
			}
		}
	}
	dst := &authv3.AttributeContext_Peer{Principal: g.p.localPrincipal}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		dst.Address = sockAddr(la.String())
	}
	attrs := &authv3.AttributeContext{
		Source: src, Destination: dst,
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Now()),
			Http: &authv3.AttributeContext_HttpRequest{
				// Envoy's id is its stream id, a decimal uint64; the
				// request id travels as the x-request-id header.
				Id:     strconv.FormatUint(rand.Uint64(), 10),
				Method: r.Method, Headers: headers,
				Path: path, Host: r.Host, Scheme: scheme, Protocol: protocolString(r),
				// Bytes received when the check starts: the buffered body.
				Size: int64(len(body)),
			},
		},
	}
	if raw {
		attrs.Request.Http.RawBody = body
	} else {
		attrs.Request.Http.Body = sanitizeUTF8(string(body))
	}
	if sni != "" {
		attrs.TlsSession = &authv3.AttributeContext_TLSSession{Sni: sni}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// principal is Envoy's principal for a certificate: the first URI SAN, else
// the first DNS SAN, else the RFC 2253 subject.
func principal(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// urlEncodedPEM is the certificate as Envoy sends it: PEM with newline,
// space, '+', '/' and '=' percent-encoded.
func urlEncodedPEM(c *x509.Certificate) string {
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").
		Replace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
}

// protocolString is Envoy's name for the downstream protocol.
func protocolString(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "HTTP/2"
	case 3:
		return "HTTP/3"
	}
	if r.ProtoMinor == 0 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// sanitizeUTF8 replaces each byte of invalid UTF-8 with '!', as Envoy does
// before putting text in a proto string field.
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteByte('!')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func sockAddr(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, _ := strconv.Atoi(port)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// descriptors builds the route's rate-limit descriptors from the request
// headers; as in Envoy, a descriptor one of whose headers is absent is
// skipped whole.
func descriptors(rt *route, h http.Header) []*commonrl.RateLimitDescriptor {
	var descs []*commonrl.RateLimitDescriptor
	for _, actions := range rt.rateLimits {
		d := &commonrl.RateLimitDescriptor{}
		for _, a := range actions {
			v := h.Get(a.header)
			if v == "" {
				d = nil
				break
			}
			d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: a.key, Value: v})
		}
		if d != nil && len(d.Entries) > 0 {
			descs = append(descs, d)
		}
	}
	return descs
}

// checkRateLimit asks the rate limiter with the route's descriptors. It
// returns false when it has replied.
func (g *Gateway) checkRateLimit(w http.ResponseWriter, r *http.Request, rt *route, isGRPC bool, respHeaders http.Header) (int, bool) {
	descs := descriptors(rt, r.Header)
	if len(descs) == 0 {
		return 0, true
	}
	p := g.p.rl
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	resp, err := g.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: p.domain, Descriptors: descs})
	if err != nil || resp.GetOverallCode() == rlsv3.RateLimitResponse_UNKNOWN {
		if !p.failureDeny {
			g.log.Warn("rate limiter unreachable; letting the request through (failure_mode_deny=false)", "err", err)
			return 0, true
		}
		g.log.Warn("rate limiter unreachable; refusing (failure_mode_deny=true)", "err", err)
		g.localReply(w, isGRPC, p.statusOnError, "", nil, false, "")
		return p.statusOnError, false
	}
	h := http.Header{}
	if p.xRateLimitHeaders {
		xRateLimitHeaders(h, resp.GetStatuses())
	}
	for _, hv := range resp.GetResponseHeadersToAdd() {
		h.Add(hv.GetKey(), hv.GetValue())
	}
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		h.Set("x-envoy-ratelimited", "true")
		g.localReply(w, isGRPC, http.StatusTooManyRequests, "", h, p.asResourceExhausted, "")
		return http.StatusTooManyRequests, false
	}
	for _, hv := range resp.GetRequestHeadersToAdd() {
		r.Header.Set(hv.GetKey(), hv.GetValue())
	}
	for k, vs := range h {
		respHeaders[k] = append(respHeaders[k], vs...)
	}
	return 0, true
}

// xRateLimitHeaders adds the draft-03 X-RateLimit headers Envoy computes
// from the descriptor statuses: the status closest to its limit gives the
// limit, remaining and reset; the limit header also lists every window's
// quota policy.
func xRateLimitHeaders(h http.Header, statuses []*rlsv3.RateLimitResponse_DescriptorStatus) {
	var tightest *rlsv3.RateLimitResponse_DescriptorStatus
	var policy bytes.Buffer
	for _, s := range statuses {
		cl := s.GetCurrentLimit()
		if cl == nil {
			continue
		}
		if tightest == nil || s.GetLimitRemaining() < tightest.GetLimitRemaining() {
			tightest = s
		}
		if window := unitSeconds(cl.GetUnit()); window > 0 {
			policy.WriteString(", " + strconv.FormatUint(uint64(cl.GetRequestsPerUnit()), 10) + ";w=" + strconv.Itoa(window))
			if cl.GetName() != "" {
				policy.WriteString(`;name="` + cl.GetName() + `"`)
			}
		}
	}
	if tightest == nil {
		return
	}
	h.Set("X-RateLimit-Limit", strconv.FormatUint(uint64(tightest.GetCurrentLimit().GetRequestsPerUnit()), 10)+policy.String())
	h.Set("X-RateLimit-Remaining", strconv.FormatUint(uint64(tightest.GetLimitRemaining()), 10))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(tightest.GetDurationUntilReset().GetSeconds(), 10))
}

func unitSeconds(u rlsv3.RateLimitResponse_RateLimit_Unit) int {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	}
	return 0
}

// trailersOnlyAsTrailers moves the status of a trailers-only gRPC response
// (an upstream refusing a call before any message: grpc-status in its one
// HEADERS frame) into trailers. ReverseProxy flushes response headers on a
// timer that can fire before it knows the body is empty; headers flushed
// without END_STREAM are ordinary headers, whose grpc-status a client
// ignores, and the stream then ends with no status at all. As trailers, the
// status reaches the client whichever way the race goes.
func trailersOnlyAsTrailers(res *http.Response) error {
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/grpc") || res.Header.Get("Grpc-Status") == "" {
		return nil
	}
	if res.Trailer == nil {
		res.Trailer = http.Header{}
	}
	for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
		if v, ok := res.Header[k]; ok {
			res.Trailer[k] = v
			delete(res.Header, k)
		}
	}
	return nil
}

// newProxy proxies to one cluster over its mTLS settings; HTTP/2 clusters
// carry gRPC with its trailers. fail answers when the upstream cannot.
func newProxy(c *clusterPlan, log *slog.Logger, fail func(http.ResponseWriter, *http.Request, error)) *httputil.ReverseProxy {
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	target := &url.URL{Scheme: scheme, Host: c.addr}
	idle := 90 * time.Second
	if c.idle > 0 {
		idle = c.idle
	}
	transport := &http.Transport{
		TLSClientConfig: c.tls, MaxIdleConnsPerHost: 256, IdleConnTimeout: idle,
	}
	if c.h2 {
		// HTTP/2 only, as the cluster's explicit protocol options say: gRPC
		// needs it end to end for trailers.
		var p http.Protocols
		if c.tls != nil {
			p.SetHTTP2(true)
		} else {
			p.SetUnencryptedHTTP2(true)
		}
		transport.Protocols = &p
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport:      transport,
		FlushInterval:  -1,
		ModifyResponse: trailersOnlyAsTrailers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("upstream failed", "cluster", c.name, "err", err)
			fail(w, r, err)
		},
	}
}

// upstreamFailed answers as Envoy's router does when the upstream fails
// before answering: 504 when the route's timeout expired, 503 otherwise,
// with Envoy's text (gRPC clients get the mapped grpc-status).
func (g *Gateway) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	isGRPC := strings.HasPrefix(r.Header.Get("content-type"), "application/grpc")
	if errors.Is(err, context.DeadlineExceeded) {
		g.localReply(w, isGRPC, http.StatusGatewayTimeout, "upstream request timeout", nil, false, "")
		return
	}
	g.localReply(w, isGRPC, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", nil, false, "")
}
