package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
	if err == nil || !strings.Contains(err.Error(), "internal address") {
		t.Fatalf("got %v, want a refusal", err)
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
