package observe_test

import (
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
)

func TestActionStateCreatesNothing(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	bs := observe.NewBreakers(map[string]observe.BreakerSettings{
		core.ActionWebhook: {FailureThreshold: 2, Window: time.Minute, OpenTimeout: time.Minute, SuccessThreshold: 1},
	}, func() time.Time { return now })
	hook := core.Action{Kind: core.ActionWebhook, URL: "https://hooks.example/a?token=secret"}
	if st, ok := bs.ActionState("t1", hook); ok || st != observe.BreakerClosed {
		t.Fatalf("before any delivery: got %v, %v, want closed, false", st, ok)
	}
	b := bs.Get("t1", core.ActionWebhook, "https://hooks.example/a")
	b.Failure()
	b.Failure()
	tests := []struct {
		name   string
		tenant string
		a      core.Action
		want   observe.BreakerState
		wantOK bool
	}{
		{"the failing target, query ignored", "t1", hook, observe.BreakerOpen, true},
		{"another tenant's same target", "t2", hook, observe.BreakerClosed, false},
		{"another target", "t1", core.Action{Kind: core.ActionWebhook, URL: "https://hooks.example/b"}, observe.BreakerClosed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st, ok := bs.ActionState(tt.tenant, tt.a); st != tt.want || ok != tt.wantOK {
				t.Errorf("got %v, %v, want %v, %v", st, ok, tt.want, tt.wantOK)
			}
		})
	}
}
