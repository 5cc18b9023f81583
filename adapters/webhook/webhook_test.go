package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core"
)

func TestNotify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var got *http.Request
	var body []byte
	status, retryAfter := 200, ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	n := webhook.New(webhook.Options{AllowPrivate: true, Now: func() time.Time { return now }})
	m := core.Message{Kind: core.ActionWebhook, IdempotencyKey: "k1", URL: srv.URL, Secret: "s", Body: []byte(`{"a":1}`)}
	if err := n.Notify(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got.Header.Get(webhook.HeaderIdempotencyKey) != "k1" || got.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers: got %v", got.Header)
	}
	ts, sig := got.Header.Get(webhook.HeaderTimestamp), got.Header.Get(webhook.HeaderSignature)
	if err := webhook.Verify("s", ts, sig, body, now, 5*time.Minute); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	if err := webhook.Verify("other", ts, sig, body, now, 5*time.Minute); err == nil {
		t.Fatal("signature verifies with the wrong secret")
	}
	if err := webhook.Verify("s", ts, sig, body, now.Add(time.Hour), 5*time.Minute); err == nil {
		t.Fatal("an old signature verifies: replays possible")
	}

	tests := []struct {
		name       string
		status     int
		retryAfter string
		permanent  bool
		wait       time.Duration
	}{
		{"server error is transient", 503, "", false, 0},
		{"429 honours Retry-After seconds", 429, "7", false, 7 * time.Second},
		{"408 is transient", 408, "", false, 0},
		{"503 honours an HTTP date", 503, now.Add(90 * time.Second).UTC().Format(http.TimeFormat), false, 90 * time.Second},
		{"404 is permanent", 404, "", true, 0},
		{"400 is permanent", 400, "", true, 0},
		{"redirect is not followed", 302, "", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, retryAfter = tt.status, tt.retryAfter
			err := n.Notify(context.Background(), m)
			var de *core.DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DeliveryError", err)
			}
			if de.Permanent != tt.permanent || de.RetryAfter != tt.wait || de.Status != tt.status {
				t.Fatalf("got permanent=%v wait=%v status=%d, want %v %v %d", de.Permanent, de.RetryAfter, de.Status, tt.permanent, tt.wait, tt.status)
			}
		})
	}
}

func TestRefusesInternalTargets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("an internal address was reached")
	}))
	defer srv.Close()
	n := webhook.New(webhook.Options{})
	err := n.Notify(context.Background(), core.Message{URL: srv.URL, Body: []byte("{}")})
	var de *core.DeliveryError
	if !errors.As(err, &de) || !de.Permanent || !strings.Contains(err.Error(), "internal address") {
		t.Fatalf("got %v, want a permanent refusal (retrying an internal target only trips the breaker)", err)
	}
}

// TestInternal holds the address filter to the special-purpose ranges,
// the IPv6 forms that embed an IPv4 address included.
func TestInternal(t *testing.T) {
	for _, tt := range []struct {
		ip       string
		internal bool
	}{
		{"127.0.0.1", true}, {"10.1.2.3", true}, {"172.31.0.1", true}, {"192.168.1.1", true},
		{"169.254.169.254", true}, // cloud metadata
		{"100.100.100.200", true}, // carrier-grade NAT: a cloud's metadata service
		{"0.0.0.0", true}, {"0.1.2.3", true}, {"198.18.0.1", true}, {"240.0.0.1", true},
		{"255.255.255.255", true}, {"224.0.0.1", true}, {"192.0.2.1", true},
		{"::1", true}, {"::", true}, {"fe80::1", true}, {"fc00::1", true}, {"fd12::1", true}, {"ff02::1", true},
		{"::ffff:10.0.0.5", true},     // IPv4-mapped
		{"64:ff9b::a00:5", true},      // NAT64 to 10.0.0.5
		{"64:ff9b::808:808", false},   // NAT64 to 8.8.8.8
		{"2002:a00:5::1", true},       // 6to4 of 10.0.0.5
		{"2002:808:808::1", false},    // 6to4 of 8.8.8.8
		{"2001:0:4136:e378::1", true}, // Teredo: the IPv4 address is obfuscated
		{"64:ff9b:1::a00:5", true},    // local-use NAT64
		{"2001:db8::1", true},
		{"8.8.8.8", false}, {"1.1.1.1", false}, {"2606:4700:4700::1111", false}, {"100.128.0.1", false},
	} {
		if got := webhook.Internal(netip.MustParseAddr(tt.ip)); got != tt.internal {
			t.Errorf("Internal(%s) = %v, want %v", tt.ip, got, tt.internal)
		}
	}
}

func TestTransportErrorIsTransient(t *testing.T) {
	n := webhook.New(webhook.Options{AllowPrivate: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := n.Notify(ctx, core.Message{URL: "http://127.0.0.1:1/x", Body: []byte("{}")})
	var de *core.DeliveryError
	if !errors.As(err, &de) || de.Permanent {
		t.Fatalf("got %v, want a transient DeliveryError", err)
	}
	_ = json.Valid
}

// TestErrorsHideSecretURLs: a delivery error names its target redacted,
// whether the target answered or could not be reached, so neither a log
// line nor a dead-letter reason made of it holds a secret URL (security
// #13, defect 7b).
func TestErrorsHideSecretURLs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The answer quotes the path, as many a 404 page does.
		http.Error(w, "no such hook: "+r.URL.Path, http.StatusNotFound)
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	n := webhook.New(webhook.Options{AllowPrivate: true})
	for _, tc := range []struct {
		name string
		m    core.Message
		hide []string
		want string
	}{
		{"a Slack URL that answers 404", core.Message{Kind: core.ActionSlack, URL: srv.URL + "/services/T1/B1/slackSECRET"},
			[]string{"slackSECRET", "T1/B1"}, srv.URL + "/services/***"},
		{"a token in the query, unreachable", core.Message{Kind: core.ActionWebhook, URL: closed.URL + "/in?token=tokSECRET"},
			[]string{"tokSECRET"}, closed.URL + "/in/***"},
		{"userinfo, unreachable", core.Message{Kind: core.ActionWebhook, URL: strings.Replace(closed.URL, "://", "://u:pwSECRET@", 1) + "/in"},
			[]string{"pwSECRET", "u:"}, closed.URL + "/in/***"},
		{"a URL that does not parse", core.Message{Kind: core.ActionWebhook, URL: "http://h.test/%zz?token=tokSECRET"},
			[]string{"tokSECRET"}, "http://h.test/%zz/***"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tc.m.Body = []byte("{}")
			err := n.Notify(ctx, tc.m)
			if err == nil {
				t.Fatal("got success, want an error")
			}
			for _, h := range tc.hide {
				if strings.Contains(err.Error(), h) {
					t.Fatalf("got %q, want %q hidden", err, h)
				}
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want it to name %s", err, tc.want)
			}
		})
	}
}
