package core_test

import (
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
)

// redactionCases are the secret-URL rule's cases; adapters/postgres runs
// the same through the SQL functions of migration 0010.
var redactionCases = []struct {
	name, kind, url, want string
}{
	{"a plain webhook is shown", "webhook", "https://hooks.acme.test/orders", "https://hooks.acme.test/orders"},
	{"a plain webhook with a harmless query", "webhook", "https://hooks.acme.test/orders?source=fraise", "https://hooks.acme.test/orders?source=fraise"},
	{"every Slack URL", "slack", "https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXX", "https://hooks.slack.com/services/***"},
	{"Slack without a path", "slack", "https://hooks.slack.com", "https://hooks.slack.com/***"},
	{"userinfo", "webhook", "https://user:pw@hooks.acme.test/in", "https://hooks.acme.test/in/***"},
	{"an @ in the path is not userinfo", "webhook", "https://hooks.acme.test/a@b", "https://hooks.acme.test/a@b"},
	{"a token in the query", "webhook", "https://hooks.acme.test/in?token=abc", "https://hooks.acme.test/in/***"},
	{"an API key, any case", "webhook", "https://hooks.acme.test/in?X-Api-KEY=abc", "https://hooks.acme.test/in/***"},
	{"a signature", "webhook", "https://bucket.test/o?X-Amz-Signature=abc", "https://bucket.test/o/***"},
	{"Azure's code", "webhook", "https://fn.test/api/hook?code=abc", "https://fn.test/api/***"},
	{"a percent-encoding in the query", "webhook", "https://hooks.acme.test/in?t%6Fken=abc", "https://hooks.acme.test/in/***"},
	{"a credential in the fragment", "webhook", "https://hooks.acme.test/in#access_token=abc", "https://hooks.acme.test/in/***"},
	{"a query without a path", "webhook", "https://hooks.acme.test?token=abc", "https://hooks.acme.test/***"},
	{"a long path segment", "webhook", "https://discord.test/api/webhooks/123/abcdefghijklmnopqrstuvwxyz0123", "https://discord.test/api/***"},
	{"a long first segment is not shown", "webhook", "https://h.test/abcdefghijklmnopqrstuvwxyz0123/x", "https://h.test/***"},
	{"23 characters are not long", "webhook", "https://h.test/abcdefghijklmnopqrstuvw", "https://h.test/abcdefghijklmnopqrstuvw"},
	{"24 characters are", "webhook", "https://h.test/abcdefghijklmnopqrstuvwx", "https://h.test/***"},
	{"a port is kept", "webhook", "http://u:p@127.0.0.1:8080/x?sig=1", "http://127.0.0.1:8080/x/***"},
	{"no scheme", "webhook", "hooks.acme.test/in", "***"},
	{"not a URL at all", "webhook", "", "***"},
	{"an email action has no URL to redact", "email", "", "***"},
}

func TestRedactActionURL(t *testing.T) {
	for _, tc := range redactionCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := core.RedactActionURL(tc.kind, tc.url); got != tc.want {
				t.Fatalf("RedactActionURL(%q, %q): got %q, want %q", tc.kind, tc.url, got, tc.want)
			}
			if secret := core.ActionURLSecret(tc.kind, tc.url); secret != (tc.want != tc.url) {
				t.Fatalf("ActionURLSecret(%q, %q): got %v, want %v", tc.kind, tc.url, secret, tc.want != tc.url)
			}
		})
	}
}

func TestRedactActionText(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    core.Action
		text string
		hide []string
	}{
		{"the URL quoted whole", core.Action{Kind: "slack", URL: "https://hooks.slack.com/services/T1/B1/SECRETSECRET"},
			`Post "https://hooks.slack.com/services/T1/B1/SECRETSECRET": EOF`, []string{"SECRETSECRET", "T1/B1"}},
		{"the path on its own", core.Action{Kind: "slack", URL: "https://hooks.slack.com/services/T1/B1/SECRETSECRET"},
			`GET /services/T1/B1/SECRETSECRET: 404`, []string{"SECRETSECRET"}},
		{"the password stripped by net/http, the query kept", core.Action{Kind: "webhook", URL: "https://u:pwSECRET@h.test/in?token=tokSECRET"},
			`Post "https://u:***@h.test/in?token=tokSECRET": dial tcp: refused`, []string{"tokSECRET", "pwSECRET"}},
		{"the userinfo on its own", core.Action{Kind: "webhook", URL: "https://u:pwSECRET@h.test/in"},
			`auth failed for u:pwSECRET@h.test`, []string{"pwSECRET"}},
		{"a long segment elsewhere", core.Action{Kind: "webhook", URL: "https://discord.test/api/webhooks/1/abcdefghijklmnopqrstuvwxyz0123"},
			`token abcdefghijklmnopqrstuvwxyz0123 refused`, []string{"abcdefghijklmnopqrstuvwxyz0123"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := core.RedactActionText(tc.text, tc.a)
			for _, h := range tc.hide {
				if strings.Contains(got, h) {
					t.Fatalf("got %q, want %q hidden", got, h)
				}
			}
		})
	}
	// A URL that is not secret is left alone, and so is the text.
	a := core.Action{Kind: "webhook", URL: "https://hooks.acme.test/orders"}
	if got := core.RedactActionText("Post https://hooks.acme.test/orders: 500", a); got != "Post https://hooks.acme.test/orders: 500" {
		t.Fatalf("got %q, want the text unchanged", got)
	}
}

// FuzzRedactActionURL: any URL, of any kind, redacts without a panic; a
// URL that is not secret is left as it is, and a secret URL's query,
// fragment and userinfo never survive.
func FuzzRedactActionURL(f *testing.F) {
	for _, tc := range redactionCases {
		f.Add(tc.kind, tc.url)
	}
	f.Fuzz(func(t *testing.T, kind, raw string) {
		got := core.RedactActionURL(kind, raw)
		if !core.ActionURLSecret(kind, raw) {
			if got != raw {
				t.Fatalf("RedactActionURL(%q, %q) changed a URL that is not secret: %q", kind, raw, got)
			}
			return
		}
		_, hostAndPath, _ := strings.Cut(got, "://")
		host, _, _ := strings.Cut(hostAndPath, "/")
		if !strings.HasSuffix(got, "***") || strings.ContainsAny(got, "?#") || strings.Contains(host, "@") {
			t.Fatalf("RedactActionURL(%q, %q) = %q keeps a query, fragment or userinfo", kind, raw, got)
		}
	})
}
