// Package webhook delivers observer messages over HTTP (core.Notifier for
// the webhook and slack action kinds): a JSON POST with an idempotency key
// and, for webhooks with a secret, an HMAC-SHA256 signature over a
// timestamp and the body, so receivers can check who sent it and when.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/core"
)

// Headers of a delivery.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderTimestamp      = "X-Fraise-Timestamp"
	// HeaderSignature is "v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>".
	HeaderSignature = "X-Fraise-Signature"
)

// Options configures a Notifier.
type Options struct {
	// AllowPrivate permits targets on loopback, private and link-local
	// addresses. Off in production: tenants' URLs must not reach the
	// internal network (or the cloud metadata service).
	AllowPrivate bool
	// MaxIdlePerHost keeps connections to busy targets (64 when zero).
	MaxIdlePerHost int
	// Now is the clock for signatures (time.Now when nil).
	Now       func() time.Time
	UserAgent string
	// TracerProvider, when set, makes a client span of each delivery (its
	// name the method, POST), a child of the span in Notify's context.
	// Whether or not it is set, a delivery made within a span carries the
	// W3C traceparent (and tracestate) of it, so a target that traces
	// continues the trace.
	TracerProvider trace.TracerProvider
}

// Notifier posts messages to their URL.
type Notifier struct {
	client *http.Client
	now    func() time.Time
	ua     string
	tracer trace.Tracer // nil: no spans
}

var _ core.Notifier = (*Notifier)(nil)

// New returns a Notifier.
func New(o Options) *Notifier {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 64
	}
	if o.UserAgent == "" {
		o.UserAgent = "fraise-observers/1"
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		// Checked on the address actually dialled, after DNS resolution,
		// so a name that resolves to an internal address is refused too.
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return err
			}
			if Internal(ip) {
				return fmt.Errorf("%w %s", ErrInternalAddress, ip)
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy: nil, DialContext: dialer.DialContext, MaxIdleConns: 1024, MaxIdleConnsPerHost: o.MaxIdlePerHost,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 5 * time.Second, ForceAttemptHTTP2: true,
	}
	n := &Notifier{
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			// A redirect could lead anywhere, internal addresses included.
			return http.ErrUseLastResponse
		}},
		now: o.Now, ua: o.UserAgent,
	}
	if o.TracerProvider != nil {
		n.tracer = o.TracerProvider.Tracer("github.com/fraise-dev/fraise/adapters/webhook")
	}
	return n
}

// Sign returns the signature header value of body sent at timestamp ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a signature header for body at timestamp header ts, refusing
// timestamps further than tolerance from now (replays). Receivers in Go can
// use it as is.
func Verify(secret, ts, sig string, body []byte, now time.Time, tolerance time.Duration) error {
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook: bad timestamp")
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook: timestamp outside tolerance")
	}
	if !hmac.Equal([]byte(Sign(secret, t, body)), []byte(sig)) {
		return errors.New("webhook: bad signature")
	}
	return nil
}

// Notify implements core.Notifier. A 2xx answer is success; 408, 429 and
// 5xx are transient (with the Retry-After the target sent); any other
// answer is permanent; transport errors are transient.
func (n *Notifier) Notify(ctx context.Context, m core.Message) (err error) {
	target := core.RedactActionURL(m.Kind, m.URL)
	var status int
	if n.tracer != nil && trace.SpanContextFromContext(ctx).IsValid() {
		var span trace.Span
		ctx, span = n.startSpan(ctx, m, target)
		defer func() { endSpan(span, status, err) }()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return &core.DeliveryError{Permanent: true, Err: redactURLError(err, target)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.ua)
	req.Header.Set(HeaderIdempotencyKey, m.IdempotencyKey)
	if m.Secret != "" {
		ts := n.now().Unix()
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, Sign(m.Secret, ts, m.Body))
	}
	// Outside the signature: the trace context says nothing about the event.
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := n.client.Do(req)
	if err != nil {
		// An internal target stays internal: retrying it only trips the
		// tenant's breaker.
		return &core.DeliveryError{Permanent: errors.Is(err, ErrInternalAddress), Err: redactURLError(err, target)}
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	// Read a little of the body: it says why, and draining lets the
	// connection be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	// The answer may quote the URL it was sent to (a 404 page often does).
	said := core.RedactActionText(strings.TrimSpace(string(snippet)), core.Action{Kind: m.Kind, URL: m.URL})
	derr := &core.DeliveryError{Status: resp.StatusCode, Err: fmt.Errorf("%s answered %s: %s", target, resp.Status, said)}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		derr.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), n.now())
	default:
		derr.Permanent = true
	}
	return derr
}

// redactURLError returns err with the URL net/http quotes in it (a
// *url.Error's, which only has its password stripped) replaced by target,
// the redacted form: a Slack URL or a token in a query must not reach a
// log line or a dead-letter reason through an error.
func redactURLError(err error, target string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = target
	}
	return err
}

// retryAfter parses a Retry-After value: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// ErrInternalAddress is a webhook target that resolved to an address that
// is not on the public internet.
var ErrInternalAddress = errors.New("webhook: refusing internal address")

// nonPublic are the special-purpose ranges of the IANA registries (RFC 6890
// and its updates) a webhook may not reach: private and shared networks
// (100.64.0.0/10 is carrier-grade NAT, and a cloud's metadata service on
// some), loopback, link-local, documentation, benchmarking, reserved,
// multicast, and the IPv6 transition prefixes that hide an IPv4 address
// Internal cannot check (Teredo obfuscates it; local-use NAT64 is
// site-defined).
var nonPublic = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/127", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:2::/48", "2001:10::/28", "2001:20::/28",
		"2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Internal reports whether a webhook must not reach ip: an address in a
// special-purpose range, or an IPv6 address that embeds one (IPv4-mapped,
// NAT64's 64:ff9b::/96, 6to4's 2002::/16), since a translator or relay
// would deliver to the embedded IPv4 address.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return Internal(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return Internal(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
