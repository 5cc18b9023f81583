package cli

import (
	"context"
	"encoding/json"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/observe"
)

// observerRulesSDL is rule management in GraphQL (docs/observers.md),
// merged into the served schema when [observers] enabled. The query fields
// read v_observer_rule; the mutations call the wrappers of migration 0009;
// testObserverRule is computed in Go. The Mutation type is declared or
// extended, whichever the user's schema needs (see withObserverRules).
const observerRulesSDL = `
"Any JSON value: a sample event's rows and key."
scalar ObserverJSON

"""
An action of an observer rule as the API shows it: a secret URL (every Slack URL, a webhook URL with
userinfo or a token) redacted, as https://hooks.slack.com/services/***, and no signing secret. Send an
action back as shown to keep what is stored; see docs/observers.md.
"""
type ObserverAction {
  kind: String!
  "The target; redacted when secretUrl."
  url: String
  "The URL is a credential, stored apart and never returned."
  secretUrl: Boolean!
  "The webhook has a signing secret (stored apart, never returned)."
  signed: Boolean!
  to: [String!]
  subject: String
  template: String
}

"An observer rule: when a change of table matches operations and condition, run actions."
type ObserverRule @view(name: "v_observer_rule") {
  id: ID!
  name: String!
  table: String!
  operations: [String!]!
  condition: String!
  """
  The row's columns the rule captures: its condition, templates and actions see only these. Null for a
  rule written before rules named their columns: it captures every column the schema does not protect.
  """
  columns: [String!]
  actions: [ObserverAction!]!
  enabled: Boolean!
  version: Int!
  createdAt: String!
  updatedAt: String!
}

"The outcome of a rule mutation: on success the rule (as it was, for a delete); else why not."
type ObserverRulePayload {
  succeeded: Boolean!
  status: String!
  errorClass: String
  message: String
  rule: ObserverRule
}

"A message a rule's action would send for a sample event."
type ObserverTestMessage { kind: String! url: String to: [String!] subject: String body: String! }

"Whether a rule matches a sample event, and what its actions would send."
type ObserverRuleTest { matched: Boolean! messages: [ObserverTestMessage!]! }

"""
An action of a rule being written. A url given as the redacted form the API shows, and a missing secret,
keep what the rule stores for the action of the same kind and URL; an empty secret removes it.
"""
input ObserverActionInput { kind: String! url: String secret: String to: [String!] subject: String template: String }

"A new rule. The condition is CEL over the event (op, table, key, before, after, changed); empty matches every event."
input ObserverRuleInput {
  name: String!
  table: String!
  operations: [String!]
  condition: String
  """
  The row's columns to capture (the table's column names). A column the schema protects with @mask or
  @auth needs the scope that lifts it (FORBIDDEN otherwise).
  """
  columns: [String!]!
  actions: [ObserverActionInput!]!
  enabled: Boolean
}

"The keys of a rule to change; absent keys keep their value."
input ObserverRulePatch {
  name: String
  table: String
  operations: [String!]
  condition: String
  "Replaces the columns the rule captures; the rule as patched is authorized as a new one."
  columns: [String!]
  actions: [ObserverActionInput!]
  enabled: Boolean
}

"A sample change event; table defaults to the rule's."
input ObserverEventInput {
  table: String
  op: String!
  key: ObserverJSON
  before: ObserverJSON
  after: ObserverJSON
  changed: [String!]
}

extend type Query {
  "The tenant's observer rules."
  observerRules: [ObserverRule!]!
  "One observer rule."
  observerRule(id: ID!): ObserverRule
  "Tests a stored rule (id) or an unsaved one (rule) against a sample event, sending nothing."
  testObserverRule(id: ID, rule: ObserverRuleInput, event: ObserverEventInput!): ObserverRuleTest! @resolver
}
`

// observerRulesMutations is the Mutation part of observerRulesSDL, after
// "type Mutation" or "extend type Mutation".
const observerRulesMutations = ` {
  "Creates a rule; its condition and actions are checked first."
  createObserverRule(input: ObserverRuleInput!): ObserverRulePayload! @function(name: "fraise.graphql_create_observer_rule")
  "Changes the keys of a rule that input holds."
  updateObserverRule(id: ID!, input: ObserverRulePatch!): ObserverRulePayload! @function(name: "fraise.graphql_update_observer_rule")
  "Turns a rule on."
  enableObserverRule(id: ID!): ObserverRulePayload! @function(name: "fraise.graphql_enable_observer_rule")
  "Turns a rule off, keeping it."
  disableObserverRule(id: ID!): ObserverRulePayload! @function(name: "fraise.graphql_disable_observer_rule")
  "Deletes a rule."
  deleteObserverRule(id: ID!): ObserverRulePayload! @function(name: "fraise.graphql_delete_observer_rule")
}
`

// withObserverRules returns sdl with rule management merged in: the Query
// type extended, the Mutation type extended when sdl has one and declared
// otherwise. A schema that does not parse is returned as it is, for
// graphql.ParseSchema to report.
func withObserverRules(sdl string) string {
	doc, err := parser.ParseSchema(&ast.Source{Name: "schema.graphql", Input: sdl})
	if err != nil {
		return sdl
	}
	mutation := "Mutation"
	for _, sd := range doc.Schema {
		for _, ot := range sd.OperationTypes {
			if ot.Operation == ast.Mutation {
				mutation = ot.Type
			}
		}
	}
	decl := "type " + mutation
	if doc.Definitions.ForName(mutation) != nil {
		decl = "extend type " + mutation
	}
	return sdl + "\n" + observerRulesSDL + decl + observerRulesMutations
}

// observerRuleHooks are the Go parts of rule management: conditions are
// compiled and actions validated before a rule is stored, the columns a
// rule captures are authorized against what the schema protects (prot),
// and testObserverRule evaluates a rule against a sample event.
func observerRuleHooks(c *observe.Compiler, prot *observe.Protection) graphql.Hooks {
	// check validates rule r and authorizes p, its author, to capture its
	// columns: a column the schema masks or restricts needs the scope that
	// lifts it, as reading it through GraphQL would.
	check := func(p core.Principal, r core.Rule) error {
		if err := observe.ValidateRule(c, r); err != nil {
			return err
		}
		return prot.Authorize(p, r.Table, r.Columns)
	}
	return graphql.Hooks{
		"createObserverRule": {Check: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) error {
			r, err := ruleFrom(nil, args["input"])
			if err != nil {
				return err
			}
			return check(p, r)
		}},
		"updateObserverRule": {Check: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) error {
			cur, err := storedRule(ctx, q, args["id"])
			if err != nil || cur == nil {
				return err // no such rule: the function reports not_found
			}
			// The rule as patched, whoever wrote what it keeps: the one who
			// patches it decides where its columns go from now on.
			r, err := ruleFrom(cur, args["input"])
			if err != nil {
				return err
			}
			return check(p, r)
		}},
		"testObserverRule": {Resolve: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) (json.RawMessage, error) {
			return testRule(ctx, c, prot, q, p, args)
		}},
	}
}

// observerProtection is what schema s protects, for observer rules: the
// columns named like a field with @mask or @auth (or a key of its @field
// path), and the tables named like a type, or its view, with @auth.
func observerProtection(s *graphql.Schema) *observe.Protection {
	p := observe.NewProtection()
	for _, f := range s.ProtectedFields() {
		if f.OnType {
			g := observe.Guard{Field: f.Type, Scope: f.Scope}
			p.GuardTable(f.Type, g)
			if f.View != "" {
				p.GuardTable(f.View, g)
			}
			continue
		}
		g := observe.Guard{Field: f.Type + "." + f.Field, Scope: f.Scope}
		p.GuardColumn(f.Field, g)
		for _, k := range f.Keys {
			p.GuardColumn(k, g)
		}
	}
	return p
}

func invalidInput(msg string) error {
	return &core.Error{Code: core.CodeInvalid, Op: "observers.rule", Message: msg}
}

// ruleFrom returns the rule that patch (GraphQL input) makes of base (a
// rule's JSON; nil for a new rule): patch's keys replace base's.
func ruleFrom(base map[string]any, patch any) (core.Rule, error) {
	merged := map[string]any{}
	for k, v := range base {
		merged[k] = v
	}
	p, _ := patch.(map[string]any)
	for k, v := range p {
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

// storedRule reads rule id of the transaction's tenant as v_observer_rule
// shows it (secrets left out, which validation does not need); nil when
// there is none.
func storedRule(ctx context.Context, q core.Querier, id any) (map[string]any, error) {
	s, _ := id.(string)
	if s == "" {
		return nil, invalidInput("id is required")
	}
	v, err := q.QueryJSON(ctx, `select v.data from public.v_observer_rule v where v.id::text = $1`, s)
	if err != nil || len(v) == 0 || string(v) == "null" {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// testRule is testObserverRule: exactly one of id and rule names the rule.
func testRule(ctx context.Context, c *observe.Compiler, prot *observe.Protection, q core.Querier, p core.Principal, args map[string]any) (json.RawMessage, error) {
	var r core.Rule
	var err error
	switch id, rule := args["id"], args["rule"]; {
	case id != nil && rule != nil, id == nil && rule == nil:
		return nil, invalidInput("give exactly one of id and rule")
	case id != nil:
		cur, err := storedRule(ctx, q, id)
		if err != nil {
			return nil, err
		}
		if cur == nil {
			return nil, &core.Error{Code: core.CodeNotFound, Op: "observers.rule", Message: "no such rule"}
		}
		if r, err = ruleFrom(cur, nil); err != nil {
			return nil, err
		}
	default:
		if r, err = ruleFrom(nil, rule); err != nil {
			return nil, err
		}
	}
	r.Tenant = p.Tenant
	if r.ID == "" {
		r.ID = "test"
	}
	ev, _ := args["event"].(map[string]any)
	e := core.ChangeEvent{Tenant: p.Tenant, Table: r.Table, TxTime: time.Now().UTC()}
	if t, ok := ev["table"].(string); ok && t != "" {
		e.Table = t
	}
	e.Op, _ = ev["op"].(string)
	for name, dst := range map[string]*json.RawMessage{"key": &e.Key, "before": &e.Before, "after": &e.After} {
		if v, ok := ev[name]; ok && v != nil {
			if *dst, err = json.Marshal(v); err != nil {
				return nil, invalidInput("event." + name + ": " + err.Error())
			}
		}
	}
	if e.Key == nil {
		e.Key = json.RawMessage("{}")
	}
	if ch, ok := ev["changed"].([]any); ok {
		for _, x := range ch {
			if s, ok := x.(string); ok {
				e.Changed = append(e.Changed, s)
			}
		}
	}
	matched, msgs, err := observe.TestRule(c, r, e, prot)
	if err != nil {
		return nil, err
	}
	type message struct {
		Kind    string   `json:"kind"`
		URL     string   `json:"url,omitempty"`
		To      []string `json:"to,omitempty"`
		Subject string   `json:"subject,omitempty"`
		Body    string   `json:"body"`
	}
	out := struct {
		Matched  bool      `json:"matched"`
		Messages []message `json:"messages"`
	}{Matched: matched, Messages: []message{}}
	for _, m := range msgs {
		out.Messages = append(out.Messages, message{Kind: m.Kind, URL: m.URL, To: m.To, Subject: m.Subject, Body: string(m.Body)})
	}
	return json.Marshal(out)
}
