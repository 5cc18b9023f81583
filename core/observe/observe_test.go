package observe_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/observe"
)

func event(op, before, after string) core.ChangeEvent {
	raw := func(s string) json.RawMessage {
		if s == "" {
			return json.RawMessage("null")
		}
		return json.RawMessage(s)
	}
	return core.ChangeEvent{Pos: core.Position{XID: 7, ID: 1}, Tenant: "t1", Table: "public.orders", Op: op,
		Key: json.RawMessage(`{"id":1}`), Before: raw(before), After: raw(after), Changed: []string{"total"}}
}

func TestConditions(t *testing.T) {
	c := observe.NewCompiler()
	tests := []struct {
		name, cond string
		e          core.ChangeEvent
		want       bool
	}{
		{"empty matches all", "", event("DELETE", `{"id":1}`, ""), true},
		{"insert over 1000", `op == "INSERT" && after.total > 1000`, event("INSERT", "", `{"total":1500}`), true},
		{"insert under 1000", `op == "INSERT" && after.total > 1000`, event("INSERT", "", `{"total":15}`), false},
		{"changed field", `"total" in changed && after.total > before.total`, event("UPDATE", `{"total":1}`, `{"total":2}`), true},
		{"missing column does not match", `after.nope == 1`, event("INSERT", "", `{"total":1}`), false},
		{"delete has no after", `has(after.total)`, event("DELETE", `{"total":1}`, ""), false},
		{"integer modulo", `after.total % 2 == 1`, event("INSERT", "", `{"total":15}`), true},
		{"fraction", `after.total > 10.5 && after.total < 11`, event("INSERT", "", `{"total":10.75}`), true},
		{"string function", `after.email.endsWith("@acme.test")`, event("INSERT", "", `{"email":"a@acme.test"}`), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cond, err := c.Compile(tt.cond)
			if err != nil {
				t.Fatal(err)
			}
			vars, err := observe.EventVars(tt.e)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := cond.Match(vars)
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConditionErrors(t *testing.T) {
	c := observe.NewCompiler()
	for _, src := range []string{"after.total >", `"a string"`, "1 + 2", "undeclared == 1", strings.Repeat("a", 5000)} {
		if _, err := c.Compile(src); core.ErrorCode(err) != core.CodeInvalid {
			t.Errorf("Compile(%.20q): got %v, want an INVALID error", src, err)
		}
	}
}

func TestCompileCaches(t *testing.T) {
	c := observe.NewCompiler()
	a, _ := c.Compile("op == 'INSERT'")
	b, _ := c.Compile("op == 'INSERT'")
	if a != b {
		t.Fatal("got two programs for one source, want the cached one")
	}
}

func TestTemplateEscaping(t *testing.T) {
	job := core.Job{ID: "k1", RuleName: "big", Event: event("INSERT", "", `{"name":"<!channel> <http://evil|x> & co","note":"a\r\nBcc: x@evil.test"}`)}
	vars, _ := observe.EventVars(job.Event)
	tests := []struct {
		name, src string
		esc       observe.Escaping
		want      string
	}{
		{"slack escapes mentions and links", "new {{ after.name }}", observe.EscapeSlack, "new &lt;!channel&gt; &lt;http://evil|x&gt; &amp; co"},
		{"header drops line breaks", "{{after.note}}", observe.EscapeHeader, "a  Bcc: x@evil.test"},
		{"text keeps values", "{{rule}}/{{op}}/{{key}}/{{after.missing}}", observe.EscapeText, `big/INSERT/{"id":1}/`},
		{"placeholders in values are not expanded", "{{after.name}}", observe.EscapeText, "<!channel> <http://evil|x> & co"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := observe.ParseTemplate(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if got := tpl.Render(job, vars, tt.esc); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"{{", "{{ nope }}", "{{ after.a b }}", "{{ after..x }}"} {
		if _, err := observe.ParseTemplate(bad); core.ErrorCode(err) != core.CodeInvalid {
			t.Errorf("ParseTemplate(%q): got %v, want INVALID", bad, err)
		}
	}
}

func TestSlackMessageIsJSON(t *testing.T) {
	job := core.Job{ID: "k", Action: core.Action{Kind: core.ActionSlack, URL: "http://x", Template: `{{after.name}}`},
		Event: event("INSERT", "", `{"name":"\"}, \"channel\": \"#general"}`)}
	m, err := observe.BuildMessage(job)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(m.Body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["text"] != `"}, "channel": "#general` {
		t.Fatalf("got %v, want only the text key holding the value", got)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	b := observe.Backoff{Base: 100 * time.Millisecond, Rand: rand.New(rand.NewPCG(1, 2)).Int64N}
	if got := b.Ceiling(40); got != 5*time.Minute {
		t.Fatalf("ceiling after many attempts: got %v, want the 5 min cap", got)
	}
	if got := b.Ceiling(3); got != 800*time.Millisecond {
		t.Fatalf("ceiling(3): got %v, want 800ms", got)
	}
	// A thousand jobs failing together retry spread over the window, not
	// in one wave: every tenth of the window gets some of them.
	var buckets [10]int
	for i := 0; i < 1000; i++ {
		d := b.Delay(3)
		if d < 0 || d >= 800*time.Millisecond {
			t.Fatalf("delay %v outside [0, 800ms)", d)
		}
		buckets[d*10/(800*time.Millisecond)]++
	}
	for i, n := range buckets {
		if n < 50 || n > 150 {
			t.Errorf("bucket %d holds %d of 1000 retries, want about 100", i, n)
		}
	}
}

func wantState(t *testing.T, b *observe.Breaker, want observe.BreakerState) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestBreakerTransitions(t *testing.T) {
	clk := coretest.NewClock(time.Unix(1000, 0))
	b := observe.NewBreaker(observe.BreakerSettings{FailureThreshold: 3, Window: time.Minute, OpenTimeout: 30 * time.Second, SuccessThreshold: 2}, clk.Now)
	wantState(t, b, observe.BreakerClosed)
	b.Failure()
	b.Failure()
	clk.Advance(2 * time.Minute) // old failures leave the window
	b.Failure()
	b.Failure()
	wantState(t, b, observe.BreakerClosed)
	b.Failure()
	wantState(t, b, observe.BreakerOpen)
	if ok, wait := b.Allow(); ok || wait != 30*time.Second {
		t.Fatalf("open: got allow=%v wait=%v, want false 30s", ok, wait)
	}
	clk.Advance(30 * time.Second)
	wantState(t, b, observe.BreakerHalfOpen)
	if ok, _ := b.Allow(); !ok {
		t.Fatal("half-open: the first probe must go")
	}
	if ok, _ := b.Allow(); ok {
		t.Fatal("half-open: a second concurrent probe must wait")
	}
	b.Release() // a probe that never reached the target frees the slot
	if ok, _ := b.Allow(); !ok {
		t.Fatal("half-open: a released probe must let the next one go")
	}
	b.Failure()
	wantState(t, b, observe.BreakerOpen) // a failed probe opens again
	clk.Advance(30 * time.Second)
	for i := 0; i < 2; i++ {
		if ok, _ := b.Allow(); !ok {
			t.Fatalf("probe %d refused", i+1)
		}
		b.Success()
	}
	wantState(t, b, observe.BreakerClosed)
}

func TestBackpressure(t *testing.T) {
	tests := []struct {
		name   string
		policy observe.Policy
		queued int64
		want   observe.Verdict
	}{
		{"queue-all admits when full", observe.PolicyQueueAll, 2000, observe.Admit},
		{"fail-fast admits below the bound", observe.PolicyFailFast, 999, observe.Admit},
		{"fail-fast dead-letters when full", observe.PolicyFailFast, 1000, observe.DeadLetter},
		{"adaptive admits below threshold", observe.PolicyAdaptive, 700, observe.Admit},
		{"adaptive slows past threshold", observe.PolicyAdaptive, 900, observe.Slow},
		{"adaptive pauses when full", observe.PolicyAdaptive, 1000, observe.Pause},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := observe.Backpressure{Policy: tt.policy, MaxBytes: 1000, ThresholdPercent: 80, MaxDelay: time.Second}
			got, d := b.Decide(tt.queued)
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if got == observe.Slow && d != 500*time.Millisecond {
				t.Fatalf("slow delay: got %v, want 500ms (half way from threshold to bound)", d)
			}
		})
	}
}

func TestRuleSetIsolatesTenants(t *testing.T) {
	c := observe.NewCompiler()
	rules := []core.Rule{
		{ID: "r1", Tenant: "t1", Name: "a", Table: "public.orders", Actions: []core.Action{{Kind: core.ActionWebhook, URL: "http://a"}}},
		{ID: "r2", Tenant: "t2", Name: "b", Table: "public.orders", Actions: []core.Action{{Kind: core.ActionWebhook, URL: "http://b"}}},
		{ID: "r3", Tenant: "t1", Name: "c", Table: "public.orders", Operations: []string{"DELETE"}, Actions: []core.Action{{Kind: core.ActionWebhook, URL: "http://c"}}},
	}
	set, err := observe.NewRuleSet(c, rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := set.Match(event("INSERT", "", `{"total":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].RuleID != "r1" {
		t.Fatalf("got %+v, want only t1's insert rule r1", jobs)
	}
	if jobs[0].ID != observe.JobID(jobs[0].Event, "r1", 0) {
		t.Fatal("job id is not the stable idempotency key")
	}
}

func TestValidateAndTestRule(t *testing.T) {
	c := observe.NewCompiler()
	r := core.Rule{ID: "r", Tenant: "t1", Name: "big", Table: "public.orders", Condition: "after.total > 1000",
		Actions: []core.Action{{Kind: core.ActionEmail, To: []string{"sales@acme.test"}, Subject: "Order {{key.id}}"}}}
	ok, msgs, err := observe.TestRule(c, r, event("INSERT", "", `{"total":5000}`), nil)
	if err != nil || !ok || len(msgs) != 1 || msgs[0].Subject != "Order 1" {
		t.Fatalf("got %v %+v %v, want a match with subject \"Order 1\"", ok, msgs, err)
	}
	r.Condition = "after.total >"
	if err := observe.ValidateRule(c, r); core.ErrorCode(err) != core.CodeInvalid {
		t.Fatalf("got %v, want INVALID", err)
	}
}

// TestJobsCarryTheirEventsTrace: every job of an event carries the trace
// context its change was committed in, and the webhook payload, which
// receivers see, does not.
func TestJobsCarryTheirEventsTrace(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	c := observe.NewCompiler()
	rules := []core.Rule{{ID: "r1", Tenant: "t1", Name: "a", Table: "public.orders", Actions: []core.Action{
		{Kind: core.ActionWebhook, URL: "http://a"}, {Kind: core.ActionSlack, URL: "http://b"},
	}}}
	set, err := observe.NewRuleSet(c, rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := event("INSERT", "", `{"total":1}`)
	e.TraceParent = tp
	jobs, err := set.Match(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Fatalf("got %d jobs, want 2", len(jobs))
	}
	for _, j := range jobs {
		if j.TraceParent != tp {
			t.Errorf("job %s: got traceparent %q, want %q", j.Action.Kind, j.TraceParent, tp)
		}
	}
	m, err := observe.BuildMessage(jobs[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.Body), "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("got webhook body %s, want no trace context in it", m.Body)
	}
}
