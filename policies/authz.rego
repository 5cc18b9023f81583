# Package fraise.authz is Fraise's authorization policy. extauthz evaluates
# data.fraise.authz.decision for every request it has authenticated, with
# the input document described in docs/policies.md, and serves the answer:
# allow (with the identity headers) or deny (with the decision's status).
#
# Permissions come from data.roles (data/roles.json): a principal may do
# what any one of its known roles permits. Anything no role permits is
# denied.
package fraise.authz

# decision is the one answer extauthz reads. A request no rule below
# decides is denied.
default decision := {"allow": false, "reason": "denied by default", "status": 403}

decision := deny(401, "no authenticated principal") if {
	not has_principal
} else := deny(403, "principal carries no tenant") if {
	not has_tenant
} else := deny(403, sprintf("principal holds no known role (roles %v)", [principal_roles])) if {
	count(known_roles) == 0
} else := {"allow": true, "reason": sprintf("role %s permits %s", [granting_roles[0], request_summary])} if {
	count(granting_roles) > 0
} else := deny(403, sprintf("roles %v do not permit %s", [sort(known_roles), request_summary]))

deny(status, reason) := {"allow": false, "reason": reason, "status": status}

# has_principal is the one test for an authenticated request: extauthz
# omits input.principal when the request carried no valid credential.
has_principal if is_object(input.principal)

has_tenant if {
	is_string(input.principal.tenant)
	input.principal.tenant != ""
}

# principal_roles are the roles the token granted; an absent or null
# roles claim grants none.
principal_roles := [r | some r in input.principal.roles] if {
	is_array(input.principal.roles)
} else := []

# known_roles are the principal's roles that data.roles defines; unknown
# roles grant nothing.
known_roles contains r if {
	some r in principal_roles
	is_object(data.roles[r])
}

# granting_roles are the known roles that permit this request, sorted so
# that the reason names the same role every time.
granting_roles := sort([r | some r in known_roles; permits(data.roles[r])])

# The kind of request: GraphQL, Arrow Flight, or neither. extauthz omits
# the graphql and flight members when they do not apply; testing with
# is_object also keeps a null from counting as present.
is_graphql if is_object(input.graphql)

is_flight if {
	not is_graphql
	is_object(input.flight)
}

# A console request (a path under /console): extauthz sets input.console
# for those, with the path below the prefix.
is_console if {
	not is_graphql
	not is_flight
	is_object(input.console)
}

is_other if {
	not is_graphql
	not is_flight
	not is_console
}

# A role permits a GraphQL operation when it allows the operation type and
# every root field the operation selects.
permits(role) if {
	is_graphql
	input.graphql.operation in role.graphql.operations
	every f in input.graphql.root_fields {
		root_field_allowed(role.graphql, f)
	}
}

# A role permits a Flight call when it allows the method and the dataset.
permits(role) if {
	is_flight
	matches_any(role.flight.methods, input.flight.method)
	dataset_allowed(role.flight, input.flight.method, input.flight.dataset)
}

# A console page or API needs what console_needs names for it: a screen
# of the role's console.screens, an action of its console.actions, or (for
# the application shell and the session's own APIs) any screen at all. A
# console path console_needs does not name is denied.
permits(role) if {
	is_console
	console_grants(object.get(role, "console", {}), console_needs)
}

# A request that is neither GraphQL, Flight nor the console needs
# other_requests.
permits(role) if {
	is_other
	role.other_requests == true
}

# A root field is allowed when some allow pattern matches it and no deny
# pattern does: deny patterns win.
root_field_allowed(g, f) if {
	matches_any(object.get(g, "allow_root_fields", ["*"]), f)
	not matches_any(object.get(g, "deny_root_fields", []), f)
}

# A role allowed every dataset ("*") may call methods whose dataset
# extauthz cannot read. A role restricted to named datasets needs a dataset
# that matches, so it cannot reach a dataset by hiding which one it is (a
# command descriptor, a descriptor too long to read).
dataset_allowed(f, _, _) if "*" in object.get(f, "datasets", [])

dataset_allowed(f, _, ds) if {
	ds != ""
	matches_any(object.get(f, "datasets", []), ds)
}

# DoGet redeems a ticket, opaque to extauthz: the core signed it for this
# caller alone, and issued it only for a GetFlightInfo or PollFlightInfo
# this policy allowed, dataset and all. A role restricted to named datasets
# may redeem its tickets (while they live: flight.ticket_ttl).
dataset_allowed(f, "DoGet", "") if count(object.get(f, "datasets", [])) > 0

# matches_any reports whether a glob pattern (*, ?, [a-z], {a,b}) matches s.
# Delimiters are null so that * matches across dots in dataset names.
matches_any(patterns, s) if {
	some p in patterns
	glob.match(p, null, s)
}

# request_summary describes the request for decision logs.
request_summary := sprintf("%s %q root fields %v", [input.graphql.operation, input.graphql.name, input.graphql.root_fields]) if {
	is_graphql
} else := sprintf("flight %s dataset %q", [input.flight.method, input.flight.dataset]) if {
	is_flight
} else := sprintf("console %s %s", [input.request.method, input.console.path]) if {
	is_console
} else := sprintf("%s %s", [input.request.method, input.request.path])

# --- the console ---

# console_needs is what a console request needs of a role, by method and
# path below /console: {"screen": s}, {"action": a} or {"session": true}.
# The playground's APIs are all POSTs that evaluate, test or export a draft
# and need the playground screen: a role without it (viewer) is refused
# them here, whatever the web application shows.
console_needs := {"session": true} if {
	input.request.method in {"GET", "HEAD"}
	input.console.path in {"", "/", "/index.html", "/api/me"}
} else := {"session": true} if {
	input.request.method == "POST"
	input.console.path == "/api/logout"
} else := {"screen": "explorer"} if {
	input.request.method == "GET"
	input.console.path == "/api/persisted"
} else := {"screen": "explorer"} if {
	input.request.method == "POST"
	input.console.path == "/api/cost"
} else := {"screen": "playground"} if {
	input.request.method == "GET"
	input.console.path == "/api/policies"
} else := {"screen": "playground"} if {
	input.request.method == "POST"
	input.console.path in {
		"/api/policies/check", "/api/policies/evaluate", "/api/policies/input",
		"/api/policies/test", "/api/policies/replay", "/api/policies/export",
	}
} else := {"screen": "decisions"} if {
	input.request.method == "GET"
	input.console.path == "/api/decisions"
} else := {"screen": "observers"} if {
	input.request.method == "GET"
	input.console.path in {"/api/observers", "/api/observers/dlq"}
} else := {"action": "dlq_replay"} if {
	input.request.method == "POST"
	regex.match(`^/api/observers/dlq/[0-9]+-[0-9]+/replay$`, input.console.path)
} else := {"screen": "quotas"} if {
	input.request.method == "GET"
	input.console.path == "/api/quotas"
}

console_grants(c, need) if {
	need.session
	count(object.get(c, "screens", [])) > 0
}

console_grants(c, need) if need.screen in object.get(c, "screens", [])

console_grants(c, need) if need.action in object.get(c, "actions", [])

# console_screens are the console screens the principal's known roles
# grant, sorted: the console's /api/me answers them, and the web
# application shows only those.
console_screens := sort({s | some r in known_roles; some s in object.get(object.get(data.roles[r], "console", {}), "screens", [])})
