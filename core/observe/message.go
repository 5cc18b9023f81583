package observe

import (
	"encoding/json"
	"net/url"

	"github.com/fraise-dev/fraise/core"
)

// Default templates, used when an action has none.
const (
	DefaultSlackTemplate   = "{{rule}}: {{op}} on {{table}} {{key}}"
	DefaultEmailSubject    = "[fraise] {{rule}}: {{op}} on {{table}}"
	DefaultEmailTemplate   = "Rule {{rule}} matched {{op}} on {{table}}.\n\nKey: {{key}}\nBefore: {{before}}\nAfter: {{after}}\nChanged: {{changed}}\n"
	defaultWebhookTemplate = ""
)

// WebhookPayload is the JSON document a webhook receives.
type WebhookPayload struct {
	ID      string           `json:"id"` // the idempotency key
	Rule    WebhookRule      `json:"rule"`
	Event   core.ChangeEvent `json:"event"`
	Attempt int              `json:"attempt"`
	// Text is the action's rendered template, when it has one.
	Text string `json:"text,omitempty"`
}

// WebhookRule names the rule that matched.
type WebhookRule struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// BuildMessage renders job's action into the message a notifier sends.
// Event data only ever fills template placeholders, escaped for the
// destination, and JSON is built by encoding/json, never by concatenation.
func BuildMessage(job core.Job) (core.Message, error) {
	a := job.Action
	m := core.Message{Kind: a.Kind, IdempotencyKey: job.ID, Tenant: job.Tenant, URL: a.URL, Secret: a.Secret}
	var vars Vars
	render := func(src, def string, esc Escaping) (string, error) {
		if src == "" {
			src = def
		}
		if src == "" {
			return "", nil
		}
		if vars == nil {
			var err error
			if vars, err = EventVars(job.Event); err != nil {
				return "", err
			}
		}
		t, err := ParseTemplate(src)
		if err != nil {
			return "", err
		}
		return t.Render(job, vars, esc), nil
	}
	switch a.Kind {
	case core.ActionWebhook:
		text, err := render(a.Template, defaultWebhookTemplate, EscapeText)
		if err != nil {
			return m, err
		}
		m.Body, err = json.Marshal(WebhookPayload{ID: job.ID, Rule: WebhookRule{job.RuleID, job.RuleName},
			Event: job.Event, Attempt: job.Attempt + 1, Text: text})
		if err != nil {
			return m, err
		}
	case core.ActionSlack:
		text, err := render(a.Template, DefaultSlackTemplate, EscapeSlack)
		if err != nil {
			return m, err
		}
		m.Body, err = json.Marshal(map[string]string{"text": text})
		if err != nil {
			return m, err
		}
	case core.ActionEmail:
		subject, err := render(a.Subject, DefaultEmailSubject, EscapeHeader)
		if err != nil {
			return m, err
		}
		body, err := render(a.Template, DefaultEmailTemplate, EscapeText)
		if err != nil {
			return m, err
		}
		m.To, m.Subject, m.Body = a.To, subject, []byte(body)
	default:
		return m, core.Errorf(core.CodeInvalid, "unknown action kind %s", a.Kind).WithOp("observe.BuildMessage")
	}
	return m, nil
}

// target names what a breaker protects: the URL without its query for
// HTTP actions, the mail server for email.
func target(a core.Action) string {
	if a.Kind == core.ActionEmail {
		return "smtp"
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return a.URL
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}
