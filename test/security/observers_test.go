package security_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// slackSecret is the secret part of a Slack incoming-webhook URL: whoever
// reads it can post to the channel.
const slackSecret = "slackSECRETslackSECRET42"

const slackURL = "https://hooks.slack.com/services/T0001/B0001/" + slackSecret

var observerAttacks = []attack{
	{
		name: "observer-slack-url-to-viewer", class: classObservers,
		does: "an operator writes a rule posting to a Slack URL; a viewer of the tenant lists the rules' actions (security #13, defect 7a)",
		want: "the URL redacted (https://hooks.slack.com/services/***); the secret nowhere in the answer",
		run: func(t *testing.T, e *env) string {
			e.createRule(t, "slack-"+randomName(), slackURL)
			return e.slackRedacted(t, e.token(t, acme, "victor", "viewer"))
		},
	},
	{
		name: "observer-slack-url-to-its-author", class: classObservers,
		does: "the operator who wrote the Slack URL lists the rules' actions",
		want: "the URL redacted: secrets are written, never read back",
		run: func(t *testing.T, e *env) string {
			e.createRule(t, "slack-"+randomName(), slackURL)
			return e.slackRedacted(t, e.token(t, acme, "olga", "operator"))
		},
	},
	{
		name: "observer-masked-column-without-scope", class: classObservers,
		does: "an operator without read:User.email creates a rule capturing public.users' email column, to receive every address by webhook (security #13, defect 7c)",
		want: "FORBIDDEN naming read:User.email, and no rule written",
		run: func(t *testing.T, e *env) string {
			name := "emails-" + randomName()
			status, g := e.s.GraphQL(t, e.token(t, acme, "olga", "operator"), ruleRequest(name, "public.users", []any{"id", "email"}, "https://hooks.example.com/emails"))
			if g.Code() != "FORBIDDEN" || !strings.Contains(g.Errors[0].Message, "read:User.email") || strings.Contains(string(g.Data), `"succeeded":true`) {
				t.Fatalf("got %d %s %+v, want FORBIDDEN naming read:User.email", status, g.Data, g.Errors)
			}
			if n := e.count(t, "SELECT count(*) FROM fraise.observer_rules WHERE name = $1", name); n != 0 {
				t.Fatalf("the rule was written (%d rows)", n)
			}
			return fmt.Sprintf("refused %d FORBIDDEN by the server; no rule written", status)
		},
	},
	{
		name: "observer-secret-in-dead-letters-and-logs", class: classObservers,
		does: "makes a Slack delivery fail (the target is unreachable), so that its error, quoting the URL, is logged and dead-lettered (security #13, defect 7b)",
		want: "the job dead-lettered; the secret in no log line and no dead letter's reason",
		run: func(t *testing.T, e *env) string {
			e.createRule(t, "slack-dlq-"+randomName(), slackURL)
			e.insertPost(t)
			if !e.s.WaitLog("hooks.slack.com/services/***", 30*time.Second) {
				t.Fatalf("no delivery to Slack logged within 30 s:\n%s", e.s.Logs())
			}
			if !e.s.WaitLog("observer job dead-lettered", 30*time.Second) {
				t.Fatalf("nothing dead-lettered within 30 s:\n%s", e.s.Logs())
			}
			if strings.Contains(e.s.Logs(), slackSecret) {
				t.Errorf("the Slack secret is in the log:\n%s", e.s.Logs())
			}
			reasons := e.deadLetterReasons(t)
			if len(reasons) == 0 {
				t.Fatal("no dead letter in Redis")
			}
			for _, r := range reasons {
				if strings.Contains(r, slackSecret) {
					t.Errorf("a dead letter's reason holds the secret: %q", r)
				}
			}
			return fmt.Sprintf("redacted: the secret in no log line and none of %d dead letters' reasons", len(reasons))
		},
	},
	{
		name: "observer-webhook-to-loopback", class: classObservers,
		does: "writes a rule whose webhook targets a server on the server's loopback (SSRF into the mesh), then triggers it",
		want: "the delivery is refused and dead-lettered; the server receives nothing",
		run: func(t *testing.T, e *env) string {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
			defer srv.Close()
			target := srv.URL + "/ssrf"
			e.createRule(t, "ssrf-"+randomName(), target)
			e.insertPost(t)
			if !e.s.WaitLog(target, 30*time.Second) {
				t.Fatalf("no delivery to %s logged within 30 s:\n%s", target, e.s.Logs())
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the loopback server got %d requests", n)
			}
			return "refused: dead-lettered, the loopback target never called"
		},
	},
}

// ruleRequest is a createObserverRule request for inserts into table,
// capturing columns, with one action per URL (Slack for Slack's URLs).
func ruleRequest(name, table string, columns []any, urls ...string) map[string]any {
	var actions []any
	for _, u := range urls {
		kind := "webhook"
		if strings.HasPrefix(u, "https://hooks.slack.com/") {
			kind = "slack"
		}
		actions = append(actions, map[string]any{"kind": kind, "url": u})
	}
	return map[string]any{
		"query": `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded status rule { id } } }`,
		"variables": map[string]any{"in": map[string]any{
			"name": name, "table": table, "operations": []any{"INSERT"}, "columns": columns, "actions": actions,
		}},
	}
}

// createRule creates, as Acme's operator, a rule on inserts into
// public.posts with an action per URL, and returns its id.
func (e *env) createRule(t *testing.T, name string, urls ...string) string {
	t.Helper()
	status, g := e.s.GraphQL(t, e.token(t, acme, "olga", "operator"), ruleRequest(name, "public.posts", []any{"id", "title"}, urls...))
	var data struct {
		CreateObserverRule struct {
			Succeeded bool
			Rule      struct{ ID string }
		}
	}
	_ = json.Unmarshal(g.Data, &data)
	if status != http.StatusOK || len(g.Errors) > 0 || !data.CreateObserverRule.Succeeded {
		t.Fatalf("creating rule %s: got %d %s %+v", name, status, g.Data, g.Errors)
	}
	return data.CreateObserverRule.Rule.ID
}

// insertPost writes a post of Acme's through the gateway, as its admin:
// an event for every rule on public.posts.
func (e *env) insertPost(t *testing.T) {
	t.Helper()
	status, g := e.s.GraphQL(t, e.token(t, acme, "alice", "admin"), map[string]any{"query": createPost, "variables": createPostVars("observed")})
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("createPost: got %d %+v", status, g.Errors)
	}
}

// slackRedacted lists Acme's rules' actions as tok and checks every Slack
// URL is redacted.
func (e *env) slackRedacted(t *testing.T, tok string) string {
	t.Helper()
	status, g := e.s.GraphQL(t, tok, map[string]any{"query": `{ observerRules { name actions { kind url } } }`})
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("got %d %+v", status, g.Errors)
	}
	if strings.Contains(string(g.Data), slackSecret) {
		t.Fatalf("the Slack secret is in the answer: %s", g.Data)
	}
	var data struct {
		ObserverRules []struct{ Actions []struct{ Kind, URL string } }
	}
	if err := json.Unmarshal(g.Data, &data); err != nil {
		t.Fatal(err)
	}
	var n int
	for _, r := range data.ObserverRules {
		for _, a := range r.Actions {
			if a.Kind == "slack" {
				n++
				if a.URL != "https://hooks.slack.com/services/***" {
					t.Errorf("got Slack URL %q, want https://hooks.slack.com/services/***", a.URL)
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("no Slack action listed: %s", g.Data)
	}
	return fmt.Sprintf("redacted: %d Slack URLs listed as https://hooks.slack.com/services/***", n)
}

// deadLetterReasons returns the reasons of Acme's dead letters in Redis.
func (e *env) deadLetterReasons(t *testing.T) []string {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: e.s.Redis.Addr})
	defer c.Close()
	msgs, err := c.XRange(context.Background(), "fraise:{"+acme+"}:observer:dlq", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		if r, ok := m.Values["reason"].(string); ok {
			out = append(out, r)
		}
	}
	return out
}

func randomName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
