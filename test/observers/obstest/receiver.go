package obstest

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core/observe"
)

// Receiver is a webhook target on loopback that records every request by
// its idempotency key: when it came, and, when delivered, the payload and
// raw body. It answers 200 unless its Handler says otherwise.
type Receiver struct {
	*httptest.Server
	mu     sync.Mutex
	d      Deliveries
	handle Handler
}

// Handler decides a Receiver's answer to the attempt-th request (from 1)
// of an idempotency key: it returns false when it wrote an answer that
// is not a delivery (a 503, say), true to count the request as delivered
// (the Receiver then answers 200 unless the Handler wrote otherwise).
type Handler func(w http.ResponseWriter, r *http.Request, p observe.WebhookPayload, attempt int) bool

// Deliveries is what a Receiver recorded, copied at one instant.
type Deliveries struct {
	// Count is the deliveries of each idempotency key: more than one is a
	// job sent again.
	Count map[string]int
	// Payloads is the last payload delivered under each key.
	Payloads map[string]observe.WebhookPayload
	// Attempts is when each request of a key came, delivered or not.
	Attempts map[string][]time.Time
	// Bodies are the delivered bodies, as sent, in order of arrival.
	Bodies []string
	// Latency is, for each delivery whose row has a timestamp column "at"
	// (public.orders' default), how long after the row's write it came.
	Latency []time.Duration
}

// StartReceiver starts a Receiver, closed when the test ends.
func StartReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	rc := &Receiver{d: Deliveries{Count: map[string]int{}, Payloads: map[string]observe.WebhookPayload{},
		Attempts: map[string][]time.Time{}}}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	tb.Cleanup(rc.Close)
	return rc
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(r.Body)
	var p observe.WebhookPayload
	_ = json.Unmarshal(body, &p)
	key := r.Header.Get(webhook.HeaderIdempotencyKey)
	rc.mu.Lock()
	rc.d.Attempts[key] = append(rc.d.Attempts[key], now)
	n := len(rc.d.Attempts[key])
	h := rc.handle
	rc.mu.Unlock()
	if h != nil && !h(w, r, p, n) {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.d.Count[key]++
	rc.d.Payloads[key] = p
	rc.d.Bodies = append(rc.d.Bodies, string(body))
	if ts, ok := afterTime(p); ok {
		rc.d.Latency = append(rc.d.Latency, now.Sub(ts))
	}
}

// afterTime is the "at" column of the payload's row after the change.
func afterTime(p observe.WebhookPayload) (time.Time, bool) {
	var row struct {
		At time.Time `json:"at"`
	}
	if json.Unmarshal(p.Event.After, &row) != nil || row.At.IsZero() {
		return time.Time{}, false
	}
	return row.At, true
}

// Handle makes h decide the answers to the requests from now on (nil:
// every request is delivered).
func (rc *Receiver) Handle(h Handler) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.handle = h
}

// Delivered returns how many idempotency keys were delivered at least once.
func (rc *Receiver) Delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.d.Count)
}

// Snapshot returns a copy of what the Receiver recorded so far.
func (rc *Receiver) Snapshot() Deliveries {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	attempts := make(map[string][]time.Time, len(rc.d.Attempts))
	for k, v := range rc.d.Attempts {
		attempts[k] = slices.Clone(v)
	}
	return Deliveries{Count: maps.Clone(rc.d.Count), Payloads: maps.Clone(rc.d.Payloads), Attempts: attempts,
		Bodies: slices.Clone(rc.d.Bodies), Latency: slices.Clone(rc.d.Latency)}
}
