package coretest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// DeliveryLogFixture is an implementation of core.DeliveryLog under test
// and how many attempts it keeps per tenant and rule.
type DeliveryLogFixture struct {
	Log core.DeliveryLog
	Cap int
}

// NewDeliveryLogFixture returns an in-memory DeliveryLog keeping 5
// attempts per rule.
func NewDeliveryLogFixture(*testing.T) DeliveryLogFixture {
	return DeliveryLogFixture{Log: &DeliveryLog{Cap: 5}, Cap: 5}
}

// TestDeliveryLogContract runs core.DeliveryLog's contract against the
// implementations newLog returns, a new one for each case. The cases run
// in parallel.
func TestDeliveryLogContract(t *testing.T, newLog func(t *testing.T) DeliveryLogFixture) {
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
	attempt := func(i int, status string) core.DeliveryAttempt {
		d := core.DeliveryAttempt{At: at.Add(time.Duration(i) * time.Second), JobID: fmt.Sprintf("job-%d", i),
			Kind: core.ActionWebhook, Status: status, Attempt: i + 1}
		if status != core.DeliveryDelivered {
			d.HTTPStatus, d.Error = 503, fmt.Sprintf("attempt %d: 503 Service Unavailable", i)
		}
		return d
	}
	record := func(tb testing.TB, l core.DeliveryLog, tenant, rule string, d core.DeliveryAttempt) {
		tb.Helper()
		if err := l.Record(ctx, tenant, rule, d); err != nil {
			tb.Fatalf("Record: %v", err)
		}
	}
	recent := func(tb testing.TB, l core.DeliveryLog, tenant, rule string, n int) []core.DeliveryAttempt {
		tb.Helper()
		ds, err := l.Recent(ctx, tenant, rule, n)
		if err != nil {
			tb.Fatalf("Recent: %v", err)
		}
		return ds
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f DeliveryLogFixture)
	}{
		{"attempts come back newest first, as recorded", func(t *testing.T, f DeliveryLogFixture) {
			want := []core.DeliveryAttempt{attempt(0, core.DeliveryFailed), attempt(1, core.DeliveryDelivered), attempt(2, core.DeliveryDead)}
			for _, d := range want {
				record(t, f.Log, TenantA, "rule-1", d)
			}
			got := recent(t, f.Log, TenantA, "rule-1", 10)
			if len(got) != len(want) {
				t.Fatalf("got %d attempts, want %d", len(got), len(want))
			}
			for i, d := range got {
				w := want[len(want)-1-i]
				if !d.At.Equal(w.At) || d.At.Location() != time.UTC {
					t.Errorf("attempt %d: time %v, want %v in UTC", i, d.At, w.At)
				}
				d.At = w.At
				if d != w {
					t.Errorf("attempt %d: got %+v, want %+v", i, d, w)
				}
			}
		}},
		{"n bounds the answer", func(t *testing.T, f DeliveryLogFixture) {
			for i := range 3 {
				record(t, f.Log, TenantA, "rule-1", attempt(i, core.DeliveryDelivered))
			}
			got := recent(t, f.Log, TenantA, "rule-1", 2)
			if len(got) != 2 || got[0].JobID != "job-2" || got[1].JobID != "job-1" {
				t.Fatalf("got %+v, want job-2 then job-1", got)
			}
			if got := recent(t, f.Log, TenantA, "rule-1", 0); len(got) != 0 {
				t.Fatalf("n=0: got %+v, want none", got)
			}
		}},
		{"only the last Cap attempts are kept", func(t *testing.T, f DeliveryLogFixture) {
			for i := range f.Cap + 3 {
				record(t, f.Log, TenantA, "rule-1", attempt(i, core.DeliveryDelivered))
			}
			got := recent(t, f.Log, TenantA, "rule-1", f.Cap+10)
			if len(got) != f.Cap || got[0].JobID != fmt.Sprintf("job-%d", f.Cap+2) || got[f.Cap-1].JobID != "job-3" {
				t.Fatalf("got %d attempts %+v, want the last %d, newest first", len(got), got, f.Cap)
			}
		}},
		{"tenants and rules do not see each other's attempts", func(t *testing.T, f DeliveryLogFixture) {
			record(t, f.Log, TenantA, "rule-1", attempt(0, core.DeliveryDelivered))
			for _, c := range []struct{ tenant, rule string }{{TenantB, "rule-1"}, {TenantA, "rule-2"}} {
				if got := recent(t, f.Log, c.tenant, c.rule, 10); len(got) != 0 {
					t.Errorf("%s %s: got %+v, want none", c.tenant, c.rule, got)
				}
			}
		}},
		{"a rule with no attempts has none", func(t *testing.T, f DeliveryLogFixture) {
			if got := recent(t, f.Log, TenantA, "never-run", 10); got == nil || len(got) != 0 {
				t.Fatalf("got %#v, want an empty, non-nil list", got)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newLog(t))
		})
	}
}
