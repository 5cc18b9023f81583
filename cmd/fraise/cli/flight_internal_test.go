package cli

import (
	"context"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/await"
)

// TestFlightAdmitter checks that the exports' admitter keeps what the
// exporter's own slots did: flight.max_exports run at once and more wait
// their turn; a tenant runs or waits for at most
// flight.max_exports_per_tenant, more being refused at once with
// RATE_LIMITED and admission.retry_after's hint.
func TestFlightAdmitter(t *testing.T) {
	const a, b, c = "tenant-a", "tenant-b", "tenant-c"
	cfg := config.Default()
	cfg.Flight.MaxExports, cfg.Flight.MaxExportsPerTenant = 2, 1
	cfg.Admission.RetryAfter = config.Duration{Duration: 9 * time.Second}
	adm := flightAdmitter(cfg)
	global := adm.(admitterChain)[1].(*admission.Controller)
	ctx := context.Background()

	releaseA, err := adm.Admit(ctx, a)
	if err != nil {
		t.Fatalf("a's first: %v", err)
	}
	_, err = adm.Admit(ctx, a)
	if d, ok := core.RetryAfter(err); core.ErrorCode(err) != core.CodeRateLimited || !ok || d != 9*time.Second {
		t.Errorf("a's second: got %v (retry after %v), want RATE_LIMITED retrying after 9s", err, d)
	}
	releaseB, err := adm.Admit(ctx, b)
	if err != nil {
		t.Fatalf("b's first: %v", err)
	}
	// Both slots taken: c waits its turn, which a's end gives it.
	admitted := make(chan error, 1)
	go func() {
		r, err := adm.Admit(ctx, c)
		if err == nil {
			defer r()
		}
		admitted <- err
	}()
	if !await.Within(10*time.Second, func() bool { return global.Stats().Queued == 1 }) {
		t.Fatal("c's export is not waiting")
	}
	releaseA()
	if err := <-admitted; err != nil {
		t.Errorf("c's export after a's ended: %v", err)
	}
	releaseB()
	if s := global.Stats(); s.Running != 0 || s.Queued != 0 {
		t.Errorf("got %+v, want every slot given back", s)
	}
}

// TestFlightAdmitterCountsWaiting: a tenant's waiting exports count
// against its share, as the exporter counted them, and one that gives up
// waiting is refused UNAVAILABLE and gives its share back.
func TestFlightAdmitterCountsWaiting(t *testing.T) {
	const a = "tenant-a"
	cfg := config.Default()
	cfg.Flight.MaxExports, cfg.Flight.MaxExportsPerTenant = 1, 2
	adm := flightAdmitter(cfg)
	global := adm.(admitterChain)[1].(*admission.Controller)

	release, err := adm.Admit(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	wctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() {
		r, err := adm.Admit(wctx, a)
		if err == nil {
			r()
		}
		waited <- err
	}()
	if !await.Within(10*time.Second, func() bool { return global.Stats().Queued == 1 }) {
		t.Fatal("a's second export is not waiting")
	}
	if _, err := adm.Admit(context.Background(), a); core.ErrorCode(err) != core.CodeRateLimited {
		t.Errorf("a's third, with one running and one waiting: got %v, want RATE_LIMITED", err)
	}
	cancel()
	if err := <-waited; core.ErrorCode(err) != core.CodeUnavailable {
		t.Errorf("the waiting export, given up: got %v, want UNAVAILABLE", err)
	}
	// Its share given back, a may wait again.
	wctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() {
		r, err := adm.Admit(wctx, a)
		if err == nil {
			r()
		}
		waited <- err
	}()
	if !await.Within(10*time.Second, func() bool { return global.Stats().Queued == 1 }) {
		t.Fatal("a's export does not wait again after the first gave up")
	}
	cancel()
	<-waited
}
