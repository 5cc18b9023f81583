# Tests of authz.rego against data/roles.json: for each role, what it may
# and may not do. Run them with `fraise policy test` (or
# `go test ./policies/...`).
package fraise.authz_test

import data.fraise.authz

tenant := "0b7c2a40-6f1e-4d4b-9a57-3f0d6e3c8a11"

principal(roles) := {
	"subject": "user-1",
	"tenant": tenant,
	"roles": roles,
	"scopes": ["read:User.email"],
	"kind": "jwt",
	"claims": {"sub": "user-1", "tenant": tenant, "roles": roles},
}

request(method, path) := {"method": method, "path": path, "host": "fraise.example", "headers": {"content-type": "application/json"}}

# graphql is the input of a GraphQL operation by a principal with roles.
graphql(roles, op, fields) := {
	"request": request("POST", "/graphql"),
	"principal": principal(roles),
	"graphql": {"operation": op, "name": "Op", "root_fields": fields},
}

# flight is the input of an Arrow Flight call by a principal with roles.
flight(roles, method, dataset) := {
	"request": request("POST", concat("", ["/arrow.flight.protocol.FlightService/", method])),
	"principal": principal(roles),
	"flight": {"method": method, "dataset": dataset},
}

allowed(req) if {
	d := authz.decision with input as req
	d.allow == true
}

# denied_with holds when the decision denies with status and a reason.
denied_with(req, status) if {
	d := authz.decision with input as req
	d.allow == false
	d.status == status
	is_string(d.reason)
	d.reason != ""
}

# --- authentication and tenancy ---

test_no_principal_is_401 if {
	denied_with({"request": request("POST", "/graphql"), "graphql": {"operation": "query", "name": "", "root_fields": ["users"]}}, 401)
}

test_null_principal_is_401 if {
	denied_with({"request": request("POST", "/graphql"), "principal": null, "graphql": {"operation": "query", "name": "", "root_fields": ["users"]}}, 401)
}

test_empty_input_is_401 if {
	denied_with({}, 401)
}

test_no_tenant_is_403 if {
	req := json.patch(graphql(["admin"], "query", ["users"]), [{"op": "remove", "path": "/principal/tenant"}])
	denied_with(req, 403)
}

test_empty_tenant_is_403 if {
	req := json.patch(graphql(["admin"], "query", ["users"]), [{"op": "replace", "path": "/principal/tenant", "value": ""}])
	denied_with(req, 403)
}

test_no_roles_is_403 if {
	denied_with(graphql([], "query", ["users"]), 403)
}

test_null_roles_is_403 if {
	req := json.patch(graphql(["viewer"], "query", ["users"]), [{"op": "replace", "path": "/principal/roles", "value": null}])
	denied_with(req, 403)
}

test_unknown_role_grants_nothing if {
	denied_with(graphql(["superuser"], "query", ["users"]), 403)
}

# --- admin: everything ---

test_admin_may_query if {
	allowed(graphql(["admin"], "query", ["users", "__typename"]))
}

test_admin_may_delete_rules if {
	allowed(graphql(["admin"], "mutation", ["deleteRule", "deleteObserver"]))
}

test_admin_may_subscribe if {
	allowed(graphql(["admin"], "subscription", ["userChanged"]))
}

test_admin_may_use_every_flight_method if {
	allowed(flight(["admin"], "DoPut", "sales.orders"))
	allowed(flight(["admin"], "DoGet", ""))
}

test_admin_may_send_other_requests if {
	allowed({"request": request("GET", "/metrics"), "principal": principal(["admin"])})
}

# --- operator: read, create, update, execute; no deletes of rules ---

test_operator_may_query if {
	allowed(graphql(["operator"], "query", ["users", "rules"]))
}

test_operator_may_create_update_and_execute if {
	allowed(graphql(["operator"], "mutation", ["createRule", "updateRule", "executeAction"]))
}

test_operator_may_delete_other_records if {
	allowed(graphql(["operator"], "mutation", ["deleteUser"]))
}

test_operator_may_not_delete_a_rule if {
	denied_with(graphql(["operator"], "mutation", ["deleteRule"]), 403)
}

test_operator_may_not_delete_rules_in_bulk if {
	denied_with(graphql(["operator"], "mutation", ["deleteRules"]), 403)
	denied_with(graphql(["operator"], "mutation", ["deleteObserverRule"]), 403)
	denied_with(graphql(["operator"], "mutation", ["deleteObserver"]), 403)
}

test_operator_may_not_hide_a_rule_delete_among_allowed_fields if {
	denied_with(graphql(["operator"], "mutation", ["updateRule", "deleteRule"]), 403)
}

test_operator_may_export_with_flight if {
	allowed(flight(["operator"], "GetFlightInfo", "sales.orders"))
	allowed(flight(["operator"], "DoGet", ""))
}

test_operator_may_not_upload_with_flight if {
	denied_with(flight(["operator"], "DoPut", "sales.orders"), 403)
}

test_operator_may_not_send_other_requests if {
	denied_with({"request": request("GET", "/metrics"), "principal": principal(["operator"])}, 403)
}

# --- viewer: queries only ---

test_viewer_may_query if {
	allowed(graphql(["viewer"], "query", ["users", "__typename"]))
}

test_viewer_may_not_mutate if {
	denied_with(graphql(["viewer"], "mutation", ["createUser"]), 403)
}

test_viewer_may_not_run_an_empty_mutation if {
	denied_with(graphql(["viewer"], "mutation", []), 403)
}

test_viewer_may_not_subscribe if {
	denied_with(graphql(["viewer"], "subscription", ["userChanged"]), 403)
}

test_viewer_may_not_use_flight if {
	denied_with(flight(["viewer"], "DoGet", ""), 403)
	denied_with(flight(["viewer"], "GetFlightInfo", "sales.orders"), 403)
}

# --- analyst (custom role): reporting queries and Flight exports ---

test_analyst_may_query_and_export if {
	allowed(graphql(["analyst"], "query", ["users"]))
	allowed(flight(["analyst"], "GetFlightInfo", "sales.orders"))
	allowed(flight(["analyst"], "DoGet", ""))
}

# Flight SQL clients prepare every statement (the Python DB-API's
# cursor.execute does, parameters or not): DoAction creates and closes
# prepared statements, each checked by the core like a statement.
test_analyst_and_operator_may_prepare_statements if {
	allowed(flight(["analyst"], "DoAction", ""))
	allowed(flight(["operator"], "DoAction", ""))
	denied_with(flight(["viewer"], "DoAction", ""), 403)
}

test_analyst_may_not_read_api_keys_or_the_audit_log if {
	denied_with(graphql(["analyst"], "query", ["apiKeys"]), 403)
	denied_with(graphql(["analyst"], "query", ["users", "auditLog"]), 403)
}

test_analyst_may_not_mutate if {
	denied_with(graphql(["analyst"], "mutation", ["updateUser"]), 403)
}

# --- several roles: any one role that permits the whole request ---

test_roles_combine_per_request if {
	allowed(graphql(["viewer", "operator"], "mutation", ["updateRule"]))
	d := authz.decision with input as graphql(["viewer", "operator"], "mutation", ["updateRule"])
	d.reason == `role operator permits mutation "Op" root fields ["updateRule"]`
}

test_unknown_roles_beside_known_ones_are_ignored if {
	allowed(graphql(["viewer", "superuser"], "query", ["users"]))
	denied_with(graphql(["viewer", "superuser"], "mutation", ["deleteRule"]), 403)
}

# --- data-driven: a custom role defined in data alone ---

test_custom_role_from_data if {
	roles := {"support": {
		"graphql": {"operations": ["query", "mutation"], "allow_root_fields": ["users", "resetPassword"]},
		"flight": {"methods": ["GetFlightInfo"], "datasets": ["support.*"]},
		"other_requests": false,
	}}
	d1 := authz.decision with input as graphql(["support"], "mutation", ["resetPassword"]) with data.roles as roles
	d1.allow == true
	d2 := authz.decision with input as graphql(["support"], "mutation", ["deleteUser"]) with data.roles as roles
	d2.allow == false
	d3 := authz.decision with input as flight(["support"], "GetFlightInfo", "support.tickets") with data.roles as roles
	d3.allow == true
	d4 := authz.decision with input as flight(["support"], "GetFlightInfo", "sales.orders") with data.roles as roles
	d4.allow == false

	# A role limited to named datasets cannot call a method whose dataset
	# extauthz could not read.
	d5 := authz.decision with input as flight(["support"], "GetFlightInfo", "") with data.roles as roles
	d5.allow == false
}

test_dataset_role_redeems_its_tickets if {
	roles := {"reporter": {
		"graphql": {"operations": []},
		"flight": {"methods": ["GetFlightInfo", "DoGet"], "datasets": ["reports.*"]},
		"other_requests": false,
	}}

	# The ticket came from a GetFlightInfo the dataset rule allowed.
	d1 := authz.decision with input as flight(["reporter"], "DoGet", "") with data.roles as roles
	d1.allow == true

	# Only DoGet: other calls without a readable dataset stay refused.
	d2 := authz.decision with input as flight(["reporter"], "GetSchema", "") with data.roles as roles
	d2.allow == false
	roles2 := {"reporter": {
		"graphql": {"operations": []},
		"flight": {"methods": ["*"], "datasets": ["reports.*"]},
		"other_requests": false,
	}}
	d3 := authz.decision with input as flight(["reporter"], "ListFlights", "") with data.roles as roles2
	d3.allow == false
	d4 := authz.decision with input as flight(["reporter"], "DoPut", "") with data.roles as roles2
	d4.allow == false

	# A role with no dataset at all redeems nothing.
	roles3 := {"none": {"graphql": {"operations": []}, "flight": {"methods": ["DoGet"], "datasets": []}, "other_requests": false}}
	d5 := authz.decision with input as flight(["none"], "DoGet", "") with data.roles as roles3
	d5.allow == false
}

test_deny_reason_names_the_request if {
	d := authz.decision with input as graphql(["viewer"], "mutation", ["createUser"])
	d.reason == `roles ["viewer"] do not permit mutation "Op" root fields ["createUser"]`
}

# --- the console: screens and APIs per role ---

# console is the input of a console request by a principal with roles;
# path is below the /console prefix.
console(roles, method, path) := {
	"request": request(method, concat("", ["/console", path])),
	"principal": principal(roles),
	"console": {"path": path, "session": "cookie"},
}

# console_cases lists, for each console API, the roles it allows; every
# other role of admin, operator, security and viewer is refused with 403.
console_cases := [
	{"method": "GET", "path": "/", "roles": {"admin", "operator", "security", "viewer"}},
	{"method": "GET", "path": "/api/me", "roles": {"admin", "operator", "security", "viewer"}},
	{"method": "POST", "path": "/api/logout", "roles": {"admin", "operator", "security", "viewer"}},
	{"method": "GET", "path": "/api/persisted", "roles": {"admin", "operator", "security", "viewer"}},
	{"method": "POST", "path": "/api/cost", "roles": {"admin", "operator", "security", "viewer"}},
	{"method": "GET", "path": "/api/policies", "roles": {"admin", "security"}},
	{"method": "POST", "path": "/api/policies/check", "roles": {"admin", "security"}},
	{"method": "POST", "path": "/api/policies/evaluate", "roles": {"admin", "security"}},
	{"method": "POST", "path": "/api/policies/input", "roles": {"admin", "security"}},
	{"method": "POST", "path": "/api/policies/test", "roles": {"admin", "security"}},
	{"method": "POST", "path": "/api/policies/replay", "roles": {"admin", "security"}},
	{"method": "POST", "path": "/api/policies/export", "roles": {"admin", "security"}},
	{"method": "GET", "path": "/api/decisions", "roles": {"admin", "operator", "security", "viewer"}},
	{"method": "GET", "path": "/api/observers", "roles": {"admin", "operator"}},
	{"method": "GET", "path": "/api/observers/dlq", "roles": {"admin", "operator"}},
	{"method": "POST", "path": "/api/observers/dlq/1700000000000-0/replay", "roles": {"admin", "operator"}},
	{"method": "GET", "path": "/api/quotas", "roles": {"admin", "operator", "viewer"}},
]

test_console_apis_per_role if {
	every c in console_cases {
		every r in {"admin", "operator", "security", "viewer"} {
			console_decides(c, r)
		}
	}
}

console_decides(c, r) if {
	r in c.roles
	allowed(console([r], c.method, c.path))
}

console_decides(c, r) if {
	not r in c.roles
	denied_with(console([r], c.method, c.path), 403)
}

test_viewer_may_not_evaluate_or_replay if {
	denied_with(console(["viewer"], "POST", "/api/policies/evaluate"), 403)
	denied_with(console(["viewer"], "POST", "/api/policies/replay"), 403)
	denied_with(console(["viewer"], "POST", "/api/observers/dlq/1-0/replay"), 403)
}

test_console_apis_refuse_other_methods if {
	denied_with(console(["admin"], "DELETE", "/api/decisions"), 403)
	denied_with(console(["admin"], "GET", "/api/policies/evaluate"), 403)
	denied_with(console(["admin"], "POST", "/api/quotas"), 403)
}

test_console_unknown_paths_are_refused if {
	denied_with(console(["admin"], "GET", "/api/unknown"), 403)
	denied_with(console(["admin"], "POST", "/api/observers/dlq/x/../../replay"), 403)
	denied_with(console(["admin"], "GET", "/secret.txt"), 403)
}

test_console_needs_a_principal if {
	denied_with(json.patch(console(["admin"], "GET", "/api/me"), [{"op": "remove", "path": "/principal"}]), 401)
}

test_role_without_console_section_gets_no_console if {
	d := authz.decision with input as console(["nocon"], "GET", "/api/me")
		with data.roles.nocon as {"graphql": {"operations": ["query"]}}
	d.allow == false
}

test_console_screens_per_role if {
	authz.console_screens == ["decisions", "explorer", "playground"] with input as console(["security"], "GET", "/api/me")
	authz.console_screens == ["decisions", "explorer", "quotas"] with input as console(["viewer"], "GET", "/api/me")
	authz.console_screens == ["decisions", "explorer", "observers", "playground", "quotas"] with input as console(["admin", "viewer"], "GET", "/api/me")
	authz.console_screens == [] with input as console(["nobody"], "GET", "/api/me")
}

test_console_is_not_other_requests if {
	# admin's other_requests does not reach the console: the console
	# section decides, so a role's console is what its data says.
	d := authz.decision with input as console(["admin"], "GET", "/api/unknown")
	d.allow == false
}

# --- security: queries, no writes or exports ---

test_security_may_query_not_mutate_or_export if {
	allowed(graphql(["security"], "query", ["users"]))
	denied_with(graphql(["security"], "mutation", ["createPost"]), 403)
	denied_with(flight(["security"], "GetFlightInfo", "people.users"), 403)
}
