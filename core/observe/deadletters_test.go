package observe_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/observe"
)

// TestDeadLetterListRedacts: what the dlq list prints holds no secret of
// the action, whatever its kind and whatever the target's answer quoted,
// and replay puts the jobs back.
func TestDeadLetterListRedacts(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		action  core.Action
		secrets []string
		wantURL string
	}{
		{"slack", core.Action{Kind: core.ActionSlack, URL: "https://hooks.slack.com/services/T0001/B0001/slackSECRETslackSECRET42"},
			[]string{"slackSECRET"}, "https://hooks.slack.com/services/***"},
		{"webhook with a token and a signing secret", core.Action{Kind: core.ActionWebhook,
			URL: "https://hooks.example/in?token=tokSECRET", Secret: "sigSECRET"}, []string{"tokSECRET", "sigSECRET"}, "https://hooks.example/in/***"},
		{"webhook with userinfo", core.Action{Kind: core.ActionWebhook, URL: "https://u:pwSECRET@hooks.example/in"},
			[]string{"pwSECRET"}, "https://hooks.example/in/***"},
		{"email", core.Action{Kind: core.ActionEmail, To: []string{"ops@acme.test"}}, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := &coretest.Queue{}
			job := core.Job{ID: "j1", Tenant: "t", RuleID: "r", Action: tt.action}
			if err := q.Enqueue(ctx, []core.Job{job}); err != nil {
				t.Fatal(err)
			}
			ds, err := q.Fetch(ctx, "c", 1, coretest.AnyRoom, 0)
			if err != nil || len(ds) != 1 {
				t.Fatalf("fetch: %v, %v", ds, err)
			}
			job.LastError = "404 from " + tt.action.URL
			if err := q.DeadLetter(ctx, ds[0], job, "gave up on "+tt.action.URL); err != nil {
				t.Fatal(err)
			}
			l := observe.DeadLetterList{Store: q}
			dls, err := l.List(ctx, "t", 10)
			if err != nil || len(dls) != 1 {
				t.Fatalf("list: got %v, %v; want one dead letter", dls, err)
			}
			d := dls[0]
			printed := strings.Join([]string{d.Reason, d.Job.LastError, d.Job.Action.URL, d.Job.Action.Secret}, "\n")
			for _, s := range tt.secrets {
				if strings.Contains(printed, s) {
					t.Errorf("the listed dead letter holds %q:\n%s", s, printed)
				}
			}
			if d.Job.Action.URL != tt.wantURL {
				t.Errorf("got URL %q, want %q", d.Job.Action.URL, tt.wantURL)
			}
			if n, err := l.Replay(ctx, "t", nil); err != nil || n != 1 {
				t.Fatalf("replay: got %d, %v; want 1", n, err)
			}
			if n := backlog(t, q, "t"); n != 1 {
				t.Errorf("got backlog %d after replay, want 1", n)
			}
		})
	}
}
