// Package ruleapi is observer rule management in GraphQL
// (docs/observers.md): the schema fragment merged into the served schema
// when observers are enabled, and the hooks through which the GraphQL
// engine calls rule management (observe.Rules) before the database's
// functions store a rule. The query fields read v_observer_rule; the
// mutations call the wrappers of migration 0009; testObserverRule is
// computed in Go.
package ruleapi

import (
	"context"
	"encoding/json"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/observe"
)

// sdl is rule management's types and queries. The Mutation type is
// declared or extended, whichever the user's schema needs (see Merge).
const sdl = `
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

// mutations is the Mutation part of sdl, after
// "type Mutation" or "extend type Mutation".
const mutations = ` {
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

// Merge returns sdl with rule management merged in: the Query type
// extended, the Mutation type extended when sdl has one and declared
// otherwise. A schema that does not parse is returned as it is, for
// graphql.ParseSchema to report.
func Merge(schema string) string {
	doc, err := parser.ParseSchema(&ast.Source{Name: "schema.graphql", Input: schema})
	if err != nil {
		return schema
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
	return schema + "\n" + sdl + decl + mutations
}

// Hooks are the rule API's root fields that run Go code, each calling m:
// a new or patched rule is checked before its mutation's function stores
// it, and testObserverRule tries a rule against a sample event.
func Hooks(m *observe.Rules) graphql.Hooks {
	return graphql.Hooks{
		"createObserverRule": {Check: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) error {
			return m.CheckNew(p, object(args["input"]))
		}},
		"updateObserverRule": {Check: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) error {
			id, _ := args["id"].(string)
			return m.CheckPatch(ctx, q, p, id, object(args["input"]))
		}},
		"testObserverRule": {Resolve: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) (json.RawMessage, error) {
			id, _ := args["id"].(string)
			if args["id"] != nil && id == "" {
				return nil, invalidInput("id is required")
			}
			ev, err := sampleEvent(object(args["event"]))
			if err != nil {
				return nil, err
			}
			var rule map[string]any
			if args["rule"] != nil {
				rule = object(args["rule"])
			}
			res, err := m.Test(ctx, q, p, id, rule, ev)
			if err != nil {
				return nil, err
			}
			return json.Marshal(res)
		}},
	}
}

// Protection is what schema s protects, for observer rules: the columns
// named like a field with @mask or @auth (or a key of its @field path),
// and the tables named like a type, or its view, with @auth.
func Protection(s *graphql.Schema) *observe.Protection {
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
	return core.Errorf(core.CodeInvalid, "%s", msg).WithOp("ruleapi")
}

// object is an input object argument; an absent one is empty.
func object(v any) map[string]any {
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

// sampleEvent is the ObserverEventInput ev.
func sampleEvent(ev map[string]any) (observe.SampleEvent, error) {
	var e observe.SampleEvent
	e.Table, _ = ev["table"].(string)
	e.Op, _ = ev["op"].(string)
	for name, dst := range map[string]*json.RawMessage{"key": &e.Key, "before": &e.Before, "after": &e.After} {
		if v, ok := ev[name]; ok && v != nil {
			b, err := json.Marshal(v)
			if err != nil {
				return e, invalidInput("event." + name + ": " + err.Error())
			}
			*dst = b
		}
	}
	if ch, ok := ev["changed"].([]any); ok {
		for _, x := range ch {
			if s, ok := x.(string); ok {
				e.Changed = append(e.Changed, s)
			}
		}
	}
	return e, nil
}
