package admission_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/admission"
)

// TestControllerIsCoreAdmitter checks that a controller, used through the
// port Flight exports and observer deliveries take, refuses as the port
// says: an *core.Error of CodeRateLimited when the tenant has its share,
// CodeUnavailable when the process is full, each with the configured
// delay as the hint core.RetryAfter reads.
func TestControllerIsCoreAdmitter(t *testing.T) {
	for _, tt := range []struct {
		name     string
		o        admission.Options
		hold     []string // tenants holding a slot first
		tenant   string
		wantCode core.Code
	}{
		{"tenant over its share", admission.Options{MaxConcurrent: 4, MaxPerTenant: 1}, []string{"a"}, "a", core.CodeRateLimited},
		{"process full", admission.Options{MaxConcurrent: 1, MaxPerTenant: 1}, []string{"a"}, "b", core.CodeUnavailable},
		{"over memory", admission.Options{MemoryLimit: 100, MemoryThreshold: 0.5, HeapInUse: func() uint64 { return 60 }}, nil, "a", core.CodeUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.RetryAfter = 7 * time.Second
			var a core.Admitter = admission.New(tt.o)
			for _, h := range tt.hold {
				release, err := a.Admit(context.Background(), h)
				if err != nil {
					t.Fatalf("Admit(%q): %v", h, err)
				}
				defer release()
			}
			release, err := a.Admit(context.Background(), tt.tenant)
			if err == nil {
				release()
				t.Fatal("got admitted, want refused")
			}
			var ce *core.Error
			if !errors.As(err, &ce) || ce.Code != tt.wantCode {
				t.Fatalf("got %v, want a *core.Error of %s", err, tt.wantCode)
			}
			if d, ok := core.RetryAfter(err); !ok || d != 7*time.Second {
				t.Errorf("got core.RetryAfter %v, %v, want 7s, true", d, ok)
			}
		})
	}
}

// fill admits work of distinct tenants on a until it refuses, and returns
// how many it admitted and their releases.
func fill(tb testing.TB, a *admission.Controller) (int, []func()) {
	tb.Helper()
	var releases []func()
	for i := 0; i < 1000; i++ {
		release, err := a.Admit(context.Background(), string(rune('a'+i%26))+string(rune('a'+i/26)))
		if err != nil {
			return i, releases
		}
		releases = append(releases, release)
	}
	tb.Fatal("never refused")
	return 0, nil
}

// TestBuildGivesEachClassItsOwnLimits checks that each class runs up to
// its own bound, and that one class being full refuses none of another.
func TestBuildGivesEachClassItsOwnLimits(t *testing.T) {
	adm := admission.Build(admission.Config{
		GraphQL:   admission.Limits{MaxConcurrent: 5},
		Flight:    admission.Limits{MaxConcurrent: 2},
		Observers: admission.Limits{MaxConcurrent: 3},
	})
	want := map[admission.Class]int{admission.ClassGraphQL: 5, admission.ClassFlight: 2, admission.ClassObservers: 3}
	var all []func()
	for _, c := range admission.Classes {
		n, releases := fill(t, adm.Of(c))
		all = append(all, releases...)
		if n != want[c] {
			t.Errorf("%s: got %d admitted, want %d", c, n, want[c])
		}
	}
	for _, r := range all {
		r()
	}
	// Released, no class holds a slot.
	for _, c := range admission.Classes {
		if s := adm.Of(c).Stats(); s.Running != 0 {
			t.Errorf("%s: got %d running after release, want 0", c, s.Running)
		}
	}
}

// TestBuildTenantAndQueueLimitsPerClass checks the per-tenant bound and
// the queue are each class's own.
func TestBuildTenantAndQueueLimitsPerClass(t *testing.T) {
	adm := admission.Build(admission.Config{
		GraphQL: admission.Limits{MaxConcurrent: 10, MaxPerTenant: 3},
		Flight:  admission.Limits{MaxConcurrent: 10, MaxPerTenant: 1},
	})
	for _, tt := range []struct {
		class admission.Class
		want  int
	}{{admission.ClassGraphQL, 3}, {admission.ClassFlight, 1}} {
		c := adm.Of(tt.class)
		n := 0
		for ; n < 10; n++ {
			release, err := c.Admit(context.Background(), "t")
			if err != nil {
				if core.ErrorCode(err) != core.CodeRateLimited {
					t.Errorf("%s: got %v, want RATE_LIMITED", tt.class, err)
				}
				break
			}
			defer release()
		}
		if n != tt.want {
			t.Errorf("%s: got %d of one tenant admitted, want %d", tt.class, n, tt.want)
		}
	}
}

// TestBuildSharesTheMemoryGuard checks that every class consults the one
// memory guard: above the threshold all refuse, below all admit.
func TestBuildSharesTheMemoryGuard(t *testing.T) {
	var heap atomic.Uint64
	adm := admission.Build(admission.Config{
		MemoryLimit: 1000, MemoryThreshold: 0.5, HeapInUse: heap.Load,
		GraphQL: admission.Limits{MaxConcurrent: 1}, Flight: admission.Limits{MaxConcurrent: 1},
		Observers: admission.Limits{MaxConcurrent: 1},
	})
	for _, tt := range []struct {
		name       string
		heap       uint64
		wantRefuse bool
	}{{"under", 400, false}, {"over", 600, true}, {"drained", 100, false}} {
		heap.Store(tt.heap)
		for _, c := range admission.Classes {
			release, err := adm.Of(c).Admit(context.Background(), "t")
			if tt.wantRefuse {
				var r *admission.Refusal
				if !errors.As(err, &r) || r.Reason != admission.ReasonMemory {
					t.Errorf("%s, %s: got %v, want a memory refusal", tt.name, c, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s, %s: got %v, want admitted", tt.name, c, err)
				continue
			}
			release()
		}
	}
}

// TestMetricsLabelDecisionsByClass checks that one set of metrics counts
// each class's decisions under its own class label, every refusal reason
// of every class starting at zero.
func TestMetricsLabelDecisionsByClass(t *testing.T) {
	reg := prometheus.NewRegistry()
	adm := admission.Build(admission.Config{
		Metrics: admission.NewMetrics(reg),
		GraphQL: admission.Limits{MaxConcurrent: 2}, Flight: admission.Limits{MaxConcurrent: 1},
		Observers: admission.Limits{MaxConcurrent: 1},
	})
	_, graphql := fill(t, adm.GraphQL) // 2 admitted, 1 refused
	_, flight := fill(t, adm.Flight)   // 1 admitted, 1 refused
	for _, r := range append(graphql, flight...) {
		r()
	}
	for _, tt := range []struct {
		class, result, reason string
		want                  float64
	}{
		{"graphql", "admitted", "", 2},
		{"graphql", "refused", "queue_full", 1},
		{"flight", "admitted", "", 1},
		{"flight", "refused", "queue_full", 1},
		{"observers", "admitted", "", 0},
		{"observers", "refused", "memory", 0},
	} {
		c, err := metricValue(reg, tt.class, tt.result, tt.reason)
		if err != nil {
			t.Errorf("%s %s %s: %v", tt.class, tt.result, tt.reason, err)
			continue
		}
		if c != tt.want {
			t.Errorf("fraise_admission_decisions_total{class=%q,result=%q,reason=%q}: got %v, want %v",
				tt.class, tt.result, tt.reason, c, tt.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "fraise_admission_decisions_total"); n != 3*8 {
		t.Errorf("got %d decision series, want %d (each class's admitted and 7 refusal reasons)", n, 3*8)
	}
}

// metricValue reads fraise_admission_decisions_total for the labels.
func metricValue(reg *prometheus.Registry, class, result, reason string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != "fraise_admission_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["class"] == class && l["result"] == result && l["reason"] == reason {
				return m.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, errors.New("no such series")
}

// TestMetricsExportEveryClassBeforeItsFirstWait: the wait histogram of a
// class that has not queued yet is exported (at zero), as docs/metrics.md
// promises; a histogram vector shows nothing until a label is used.
func TestMetricsExportEveryClassBeforeItsFirstWait(t *testing.T) {
	reg := prometheus.NewRegistry()
	admission.NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "fraise_admission_wait_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "class" {
					got[l.GetValue()] = true
				}
			}
		}
	}
	for _, c := range admission.Classes {
		if !got[string(c)] {
			t.Errorf("fraise_admission_wait_seconds{class=%q} not exported before any wait", c)
		}
	}
}
