package extauthz

import (
	"github.com/fraise-dev/fraise/extauthz/operation"
	"github.com/fraise-dev/fraise/extauthz/token"
)

// input is the policy's input document for one request; docs/policies.md
// documents its shape, which policies depend on and which therefore only
// grows.
type input struct {
	method, path, host string
	headers            map[string]string
	identity           token.Identity
	graphql            *operation.GraphQL
	flight             *operation.Flight
	console            *consoleInput
}

// credentialHeaders never reach the policy: the principal is what the
// credential proved, and the input may end up in decision logs.
var credentialHeaders = map[string]bool{"authorization": true, "proxy-authorization": true, "cookie": true, CSRFHeader: true}

// value builds the input from the Go types OPA converts without a JSON
// round trip (maps of any, []string, map[string]string, strings, bools),
// which keeps evaluation cheap. Members that do not apply are left out,
// never null, so that a policy can test for their presence.
func (in *input) value() map[string]any {
	headers := make(map[string]string, len(in.headers))
	for k, v := range in.headers {
		if !credentialHeaders[k] {
			headers[k] = v
		}
	}
	doc := map[string]any{
		"request": map[string]any{
			"method":  in.method,
			"path":    in.path,
			"host":    in.host,
			"headers": headers,
		},
	}
	if p := in.identity.Principal; p.Subject != "" {
		claims := in.identity.Claims
		if claims == nil {
			claims = map[string]any{}
		}
		doc["principal"] = map[string]any{
			"subject": p.Subject,
			"tenant":  p.Tenant,
			"roles":   nonNil(p.Roles),
			"scopes":  nonNil(p.Scopes),
			"kind":    string(p.Kind),
			"tier":    p.Tier,
			"issuer":  in.identity.Issuer,
			"claims":  claims,
		}
	}
	if g := in.graphql; g != nil {
		doc["graphql"] = map[string]any{
			"operation":   g.Operation,
			"name":        g.Name,
			"root_fields": nonNil(g.RootFields),
		}
	}
	if f := in.flight; f != nil {
		doc["flight"] = map[string]any{"method": f.Method, "dataset": f.Dataset}
	}
	if c := in.console; c != nil {
		doc["console"] = map[string]any{"path": c.path, "session": c.session}
	}
	return doc
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
