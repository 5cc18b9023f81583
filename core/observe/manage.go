package observe

import (
	"context"
	"encoding/json"
	"maps"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// Rules is rule management, the application service the rule API (see
// package ruleapi) calls: a rule is validated, and its author authorized
// to capture its columns, before the database stores it; and a stored or
// unsaved rule is tried against a sample event without sending anything.
// The database's functions store rules; Rules decides what they may store.
type Rules struct {
	Compiler *Compiler
	// Protection is what the served schema protects (nil: nothing): a
	// column it masks or restricts needs the scope that lifts it.
	Protection *Protection
	// Store reads the rule a change applies to.
	Store core.StoredRules
}

func invalidInput(msg string) error {
	return core.Errorf(core.CodeInvalid, "%s", msg).WithOp("observe.Rules")
}

// Check validates rule r and authorizes p, its author, to capture its
// columns, as reading them through GraphQL would. Errors are *core.Error
// with CodeInvalid or CodeForbidden.
func (m *Rules) Check(p core.Principal, r core.Rule) error {
	if err := ValidateRule(m.Compiler, r); err != nil {
		return err
	}
	return m.Protection.Authorize(p, r.Table, r.Columns)
}

// CheckNew checks input, a new rule as the API takes it, for p.
func (m *Rules) CheckNew(p core.Principal, input map[string]any) error {
	r, err := RuleFrom(nil, input)
	if err != nil {
		return err
	}
	return m.Check(p, r)
}

// CheckPatch checks rule id of q's tenant as patch changes it, for p:
// whoever wrote what the rule keeps, the one who patches it decides where
// its columns go from now on. A rule the tenant does not have passes, for
// the database's function to report as not found.
func (m *Rules) CheckPatch(ctx context.Context, q core.Querier, p core.Principal, id string, patch map[string]any) error {
	cur, err := m.stored(ctx, q, id)
	if err != nil || cur == nil {
		return err
	}
	r, err := RuleFrom(cur, patch)
	if err != nil {
		return err
	}
	return m.Check(p, r)
}

// stored reads rule id as the API shows it (secrets left out, which
// validation does not need); nil when there is none.
func (m *Rules) stored(ctx context.Context, q core.Querier, id string) (map[string]any, error) {
	if id == "" {
		return nil, invalidInput("id is required")
	}
	v, err := m.Store.StoredRule(ctx, q, id)
	if err != nil || len(v) == 0 || string(v) == "null" {
		return nil, err
	}
	var r map[string]any
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, err
	}
	return r, nil
}

// RuleFrom returns the rule that patch (the API's input) makes of base (a
// rule as the API shows it; nil for a new rule): patch's keys that are set
// replace base's.
func RuleFrom(base map[string]any, patch map[string]any) (core.Rule, error) {
	merged := maps.Clone(base)
	if merged == nil {
		merged = map[string]any{}
	}
	for k, v := range patch {
		if v != nil {
			merged[k] = v
		}
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return core.Rule{}, invalidInput("rule: " + err.Error())
	}
	var r core.Rule
	if err := json.Unmarshal(b, &r); err != nil {
		return core.Rule{}, invalidInput("rule: " + err.Error())
	}
	return r, nil
}

// SampleEvent is a change event as the API takes it to test a rule.
type SampleEvent struct {
	// Table defaults to the rule's.
	Table              string
	Op                 string
	Key, Before, After json.RawMessage
	Changed            []string
}

// TestResult is whether a rule matched a sample event and the messages
// its actions would send.
type TestResult struct {
	Matched  bool          `json:"matched"`
	Messages []TestMessage `json:"messages"`
}

// TestMessage is a message a rule's action would send.
type TestMessage struct {
	Kind    string   `json:"kind"`
	URL     string   `json:"url,omitempty"`
	To      []string `json:"to,omitempty"`
	Subject string   `json:"subject,omitempty"`
	Body    string   `json:"body"`
}

// Test tries a rule of p's tenant against e, sending nothing: the stored
// rule id, or rule, an unsaved one as the API takes it; exactly one of
// them. Errors are *core.Error: CodeInvalid for bad input, CodeNotFound
// for a rule the tenant does not have.
func (m *Rules) Test(ctx context.Context, q core.Querier, p core.Principal, id string, rule map[string]any, e SampleEvent) (TestResult, error) {
	var r core.Rule
	var err error
	switch {
	case (id != "") == (rule != nil):
		return TestResult{}, invalidInput("give exactly one of id and rule")
	case id != "":
		cur, err := m.stored(ctx, q, id)
		if err != nil {
			return TestResult{}, err
		}
		if cur == nil {
			return TestResult{}, core.Errorf(core.CodeNotFound, "no such rule").WithOp("observe.Rules")
		}
		if r, err = RuleFrom(cur, nil); err != nil {
			return TestResult{}, err
		}
	default:
		if r, err = RuleFrom(nil, rule); err != nil {
			return TestResult{}, err
		}
	}
	r.Tenant = p.Tenant
	if r.ID == "" {
		r.ID = "test"
	}
	ev := core.ChangeEvent{Tenant: p.Tenant, Table: r.Table, Op: e.Op, TxTime: time.Now().UTC(),
		Key: e.Key, Before: e.Before, After: e.After, Changed: e.Changed}
	if e.Table != "" {
		ev.Table = e.Table
	}
	if ev.Key == nil {
		ev.Key = json.RawMessage("{}")
	}
	matched, msgs, err := TestRule(m.Compiler, r, ev, m.Protection)
	if err != nil {
		return TestResult{}, err
	}
	out := TestResult{Matched: matched, Messages: []TestMessage{}}
	for _, msg := range msgs {
		out.Messages = append(out.Messages, TestMessage{Kind: msg.Kind, URL: msg.URL, To: msg.To, Subject: msg.Subject, Body: string(msg.Body)})
	}
	return out, nil
}
