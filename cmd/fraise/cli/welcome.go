package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/envoy"
)

// welcome is what the banner `fraise dev` prints once ready is made of.
type welcome struct {
	// CA, Cert and Key are the development client's TLS files.
	CA, Cert, Key string
	Addrs         devAddrs
	// Dir holds the development keys the sample tokens are signed with.
	Dir string
	// Config is the --config `fraise dev` was given ("" for none): the
	// Flight command reads the same.
	Config string
	// Demo prints one command for each capability: GraphQL, a Flight
	// export and an insert that fires the demo's observer rule.
	Demo bool
	// TraceURL (telemetry.trace_url, when tracing) has the GraphQL request
	// carry a traceparent of a trace id chosen here, which Envoy
	// continues, and the link to that trace printed beside it.
	TraceURL string
}

// demoPostTitle is the title of the post the banner's insert creates.
const demoPostTitle = "Hello, observers"

// printWelcome prints the ready-to-paste commands `make run` promises, with
// development tokens of the Acme tenant valid for a day.
func printWelcome(env Env, w welcome) {
	a := w.Addrs
	token := func(roles string) (string, error) {
		return mintDevToken(w.Dir, tokenRequest{Tenant: demo.TenantAcme, Subject: "alice", Roles: []string{roles}, TTL: 24 * time.Hour})
	}
	viewer, err := token("viewer")
	if err != nil {
		fmt.Fprintf(env.Stdout, "fraise dev: ready on https://%s (no sample token: %v)\n", a.Gateway, err)
		return
	}
	mode := "static bootstrap"
	if a.XDS != "" {
		mode = "xDS from " + a.XDS
	}
	fmt.Fprintf(env.Stdout, `
Fraise is running (Ctrl-C stops it).
  ingress (Envoy %s, pid %d, mTLS)  https://%s/graphql   (%s)
  Envoy admin      http://%s/ready, /stats/prometheus
  core             %s   (accepts only the gateway's certificate and extauthz's assertion)
  extauthz (gRPC)  %s
  ratelimit (gRPC) %s
`, envoy.Version, a.EnvoyPid, a.Gateway, mode, a.EnvoyAdmin, a.CoreHTTP, a.Authz, a.RateLimit)
	if a.CoreAdmin != "" || a.AuthzAdmin != "" {
		fmt.Fprintf(env.Stdout, "  health, metrics  core http://%s/metrics, extauthz http://%s/metrics\n", a.CoreAdmin, a.AuthzAdmin)
	}
	if a.CoreFlight != "" {
		fmt.Fprintf(env.Stdout, "  Arrow Flight     grpc+tls://%s (core port %s; docs/flight.md)\n", a.Gateway, a.CoreFlight)
	}
	if a.DemoReceiver != "" {
		fmt.Fprintf(env.Stdout, "  demo receiver    http://%s/observer (prints each observer delivery here)\n", a.DemoReceiver)
	}
	fmt.Fprintf(env.Stdout, "  console          https://%s/console/ (development login; the browser needs the client certificate, docs/console.md)\n", a.Gateway)
	var traceHeader, traceLink string
	if w.TraceURL != "" {
		var ids [24]byte
		_, _ = rand.Read(ids[:])
		tid, sid := hex.EncodeToString(ids[:16]), hex.EncodeToString(ids[16:])
		traceHeader = "  -H 'traceparent: 00-" + tid + "-" + sid + "-01' \\\n"
		traceLink = "\nIts trace, a few seconds after you send it: " + strings.ReplaceAll(w.TraceURL, "{trace_id}", tid) + "\n"
	}
	curl := func(tok, header, body string) string {
		return fmt.Sprintf(`curl -sS --cacert %s --cert %s --key %s \
  -H 'Authorization: Bearer %s' \
  -H 'Content-Type: application/json' \
%s  -d '%s' \
  https://%s/graphql`, w.CA, w.Cert, w.Key, tok, header, body, a.Gateway)
	}
	users := `{"query":"{ users { id name email } }"}`
	if !w.Demo {
		fmt.Fprintf(env.Stdout, "\nPaste this to read the Acme tenant's users as Alice (a viewer):\n\n%s\n%s", curl(viewer, traceHeader, users), traceLink)
		fmt.Fprintf(env.Stdout, "\nOther tokens: bin/fraise token --tenant %s --subject carol --roles viewer\n", demo.TenantGlobex)
		return
	}
	analyst, err := token("analyst")
	if err == nil {
		var operator string
		if operator, err = token("operator"); err == nil {
			config := ""
			if w.Config != "" {
				config = " --config " + w.Config
			}
			insert := fmt.Sprintf(`{"query":"mutation { createPost(input: {title: \"%s\", authorId: \"%s\"}) { __typename ... on CreatePostSuccess { post { id title } } } }"}`,
				demoPostTitle, demoAlice)
			fmt.Fprintf(env.Stdout, `
Paste these (the tokens are Alice's, of the Acme tenant, for a day).

1. GraphQL: the tenant's users, as a viewer (emails masked without the read:User.email scope):

%s
%s
2. Arrow Flight: export the same users as CSV with the CLI, as an analyst (masked alike;
   --format parquet or arrow, --output FILE; bin/fraise flight list shows every dataset):

bin/fraise flight get --profile dev%s --addr %s --token '%s' --format csv people.users

3. Observers: insert a post as an operator; the demo rule %q sends it to the demo
   receiver, which prints the delivery here ("observer delivery: ..."):

%s

Other tokens: bin/fraise token --tenant %s --subject carol --roles viewer
`, curl(viewer, traceHeader, users), traceLink, config, a.Gateway, analyst, demoRuleName, curl(operator, "", insert), demo.TenantGlobex)
			return
		}
	}
	fmt.Fprintf(env.Stdout, "fraise dev: no sample token: %v\n", err)
}

// demoAlice is Alice's user id in the demo data.
const demoAlice = "a0000000-0000-4000-8000-00000000000a"
