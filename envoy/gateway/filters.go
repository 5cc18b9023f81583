package gateway

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// checkAuthz asks extauthz about r, filling the CheckRequest as Envoy fills
// it, and applies the answer. It returns false when it has replied.
func (g *Gateway) checkAuthz(w http.ResponseWriter, r *http.Request, rt *route, isGRPC bool, respHeaders http.Header) (int, bool) {
	a := g.p.authz
	var body []byte
	if a.withBody && !rt.noAuthzBody {
		b, complete, err := readBody(r, a.maxBody)
		if err != nil {
			g.localReply(w, isGRPC, http.StatusBadRequest, "", nil, false)
			return http.StatusBadRequest, false
		}
		if !complete && !a.partialBody {
			g.localReply(w, isGRPC, http.StatusRequestEntityTooLarge, `{"errors":[{"message":"request body too large","extensions":{"code":"TOO_LARGE"}}]}`, nil, false)
			return http.StatusRequestEntityTooLarge, false
		}
		body = b
	}
	req := checkRequest(r, body, a.peerCert)
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	resp, err := g.authz.Check(ctx, req)
	if err != nil {
		if a.failureAllow {
			return 0, true
		}
		g.log.Warn("ext_authz failed; refusing (fail closed)", "request_id", r.Header.Get("x-request-id"), "err", err)
		g.localReply(w, isGRPC, a.statusOnError, "", nil, false)
		return a.statusOnError, false
	}
	if resp.GetStatus().GetCode() != int32(code.Code_OK) {
		d := resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden
		}
		h := http.Header{}
		for _, hv := range d.GetHeaders() {
			h.Add(hv.GetHeader().GetKey(), headerValue(hv.GetHeader()))
		}
		if isGRPC {
			g.localReply(w, true, status, "", h, false)
			return status, false
		}
		for k, vs := range h {
			w.Header()[http.CanonicalHeaderKey(k)] = vs
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(d.GetBody()))
		return status, false
	}
	ok := resp.GetOkResponse()
	for _, hv := range ok.GetHeaders() {
		applyHeader(r.Header, hv)
	}
	for _, k := range ok.GetHeadersToRemove() {
		r.Header.Del(k)
	}
	for _, hv := range ok.GetResponseHeadersToAdd() {
		respHeaders.Add(hv.GetHeader().GetKey(), headerValue(hv.GetHeader()))
	}
	return 0, true
}

func headerValue(h *corev3.HeaderValue) string {
	if v := h.GetValue(); v != "" {
		return v
	}
	return string(h.GetRawValue())
}

// applyHeader applies one HeaderValueOption as Envoy does.
func applyHeader(h http.Header, hv *corev3.HeaderValueOption) {
	k, v := hv.GetHeader().GetKey(), headerValue(hv.GetHeader())
	action := hv.GetAppendAction()
	//lint:ignore SA1019 Envoy still honours the deprecated boolean when it is set, so must we.
	if appendFlag := hv.GetAppend(); appendFlag != nil {
		if appendFlag.GetValue() {
			action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		} else {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		}
	}
	switch action {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		h.Add(k, v)
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if h.Get(k) == "" {
			h.Set(k, v)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.Get(k) != "" {
			h.Set(k, v)
		}
	default:
		h.Set(k, v)
	}
}

// checkRequest builds the CheckRequest Envoy sends for r.
func checkRequest(r *http.Request, body []byte, peerCert bool) *authv3.CheckRequest {
	headers := make(map[string]string, len(r.Header)+3)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	scheme := "https"
	headers[":method"], headers[":path"], headers[":authority"], headers[":scheme"] = r.Method, r.URL.RequestURI(), r.Host, scheme
	src := &authv3.AttributeContext_Peer{Address: sockAddr(r.RemoteAddr)}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		c := r.TLS.PeerCertificates[0]
		switch {
		case len(c.URIs) > 0:
			src.Principal = c.URIs[0].String()
		default:
			src.Principal = c.Subject.String()
		}
		if peerCert {
			src.Certificate = url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
		}
	}
	dst := &authv3.AttributeContext_Peer{}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		dst.Address = sockAddr(la.String())
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: src, Destination: dst,
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Now()),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: r.Header.Get("x-request-id"), Method: r.Method, Headers: headers,
				Path: r.URL.RequestURI(), Host: r.Host, Scheme: scheme, Protocol: r.Proto,
				Size: r.ContentLength, Body: string(body),
			},
		},
	}}
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

// checkRateLimit asks the rate limiter with the route's descriptors. It
// returns false when it has replied.
func (g *Gateway) checkRateLimit(w http.ResponseWriter, r *http.Request, rt *route, isGRPC bool, respHeaders http.Header) (int, bool) {
	var descs []*commonrl.RateLimitDescriptor
	for _, actions := range rt.rateLimits {
		d := &commonrl.RateLimitDescriptor{}
		for _, a := range actions {
			v := r.Header.Get(a.header)
			if v == "" { // Envoy skips a descriptor whose header is absent
				d = nil
				break
			}
			d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: a.key, Value: v})
		}
		if d != nil && len(d.Entries) > 0 {
			descs = append(descs, d)
		}
	}
	if len(descs) == 0 {
		return 0, true
	}
	p := g.p.rl
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	resp, err := g.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: p.domain, Descriptors: descs, HitsAddend: 1})
	if err != nil {
		if !p.failureDeny {
			g.log.Warn("rate limiter unreachable; letting the request through (failure_mode_deny=false)", "err", err)
			return 0, true
		}
		g.localReply(w, isGRPC, http.StatusInternalServerError, "", nil, false)
		return http.StatusInternalServerError, false
	}
	h := http.Header{}
	for _, hv := range resp.GetResponseHeadersToAdd() {
		h.Add(hv.GetKey(), hv.GetValue())
	}
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		h.Set("x-envoy-ratelimited", "true")
		g.localReply(w, isGRPC, http.StatusTooManyRequests, "", h, p.asResourceExhausted)
		return http.StatusTooManyRequests, false
	}
	for k, vs := range h {
		respHeaders[k] = append(respHeaders[k], vs...)
	}
	return 0, true
}

// newProxy proxies to one cluster over its mTLS settings; HTTP/2 clusters
// carry gRPC with its trailers.
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

func newProxy(c *clusterPlan, log *slog.Logger) *httputil.ReverseProxy {
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	target := &url.URL{Scheme: scheme, Host: c.addr}
	transport := &http.Transport{
		TLSClientConfig: c.tls, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
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
			w.Header().Set("content-type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"errors":[{"message":"upstream unavailable","extensions":{"code":"UNAVAILABLE"}}]}`))
		},
	}
}
