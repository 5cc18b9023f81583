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
	"strconv"
	"strings"
	"syscall"
	"time"

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
}

// Notifier posts messages to their URL.
type Notifier struct {
	client *http.Client
	now    func() time.Time
	ua     string
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
			if ip = ip.Unmap(); ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() ||
				ip.IsLinkLocalMulticast() || ip.IsMulticast() {
				return fmt.Errorf("webhook: refusing internal address %s", ip)
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy: nil, DialContext: dialer.DialContext, MaxIdleConns: 1024, MaxIdleConnsPerHost: o.MaxIdlePerHost,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 5 * time.Second, ForceAttemptHTTP2: true,
	}
	return &Notifier{
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			// A redirect could lead anywhere, internal addresses included.
			return http.ErrUseLastResponse
		}},
		now: o.Now, ua: o.UserAgent,
	}
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
func (n *Notifier) Notify(ctx context.Context, m core.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return &core.DeliveryError{Permanent: true, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.ua)
	req.Header.Set(HeaderIdempotencyKey, m.IdempotencyKey)
	if m.Secret != "" {
		ts := n.now().Unix()
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, Sign(m.Secret, ts, m.Body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return &core.DeliveryError{Err: err}
	}
	defer resp.Body.Close()
	// Read a little of the body: it says why, and draining lets the
	// connection be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	derr := &core.DeliveryError{Status: resp.StatusCode,
		Err: fmt.Errorf("%s answered %s: %s", m.URL, resp.Status, strings.TrimSpace(string(snippet)))}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		derr.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), n.now())
	default:
		derr.Permanent = true
	}
	return derr
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
