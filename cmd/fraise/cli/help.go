package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// help is what `--help` says of a command or subcommand besides its flags:
// a one-line description, how it is called and examples to paste.
type help struct {
	// Usage is the synopsis after "fraise ".
	Usage string
	// Summary is the one-line description.
	Summary string
	// Examples are command lines to paste.
	Examples []string
}

// audience groups `fraise --help`'s commands by who runs them.
type audience struct {
	name     string
	commands []string
}

// audiences lists the commands of each audience, in the order
// `fraise --help` shows them. A command named in none is shown under
// "more".
var audiences = []audience{
	{"developers", []string{"dev", "token", "flight", "schema", "certs", "completion"}},
	{"operators", []string{"serve", "authz", "ratelimit", "xds", "envoy", "migrate", "observers", "backup"}},
	{"security teams", []string{"policy", "apikey"}},
}

// helps is every command's and subcommand's help, by its path ("token",
// "observers dlq list"). TestEveryCommandExplainsItself walks them.
var helps = map[string]help{
	"serve": {"serve [--config fraise.toml]", "run the server: GraphQL over HTTP, Arrow Flight and, when enabled, observers",
		[]string{"fraise serve --config /etc/fraise/fraise.toml", "FRAISE_SERVER_HTTP_ADDR=0.0.0.0:8080 fraise serve"}},
	"authz": {"authz [--config fraise.toml]", "run extauthz: Envoy's external authorization service (JWT, API keys, OPA policy)",
		[]string{"fraise authz --config /etc/fraise/fraise.toml"}},
	"ratelimit": {"ratelimit [--config fraise.toml]", "run the global rate limiter (envoyproxy/ratelimit) on ratelimit.grpc_addr",
		[]string{"fraise ratelimit --config /etc/fraise/fraise.toml"}},
	"dev": {"dev [--demo] [--config fraise.toml] [flags]", "run the whole stack (server, extauthz, rate limiter, Envoy) in one process for development",
		[]string{"fraise dev --demo", "fraise dev --xds --config fraise.toml"}},
	"migrate": {"migrate [--create-db] [--demo] [--config fraise.toml]", "apply the database migrations (--demo adds the demo schema and data)",
		[]string{"fraise migrate --create-db --demo", "fraise migrate --config /etc/fraise/fraise.toml"}},
	"certs": {"certs [--dir .dev] [--force] [--hosts names]", "write a development CA, certificates and signing keys under .dev/",
		[]string{"fraise certs", "fraise certs --force --hosts fraise.local"}},
	"token": {"token --tenant ID --subject NAME [flags]", "mint a development JWT that the default configuration's extauthz trusts",
		[]string{"fraise token --tenant 11111111-1111-4111-8111-111111111111 --subject alice --roles viewer",
			"fraise token --tenant 22222222-2222-4222-8222-222222222222 --subject carol --roles analyst --scopes read:User.email --ttl 24h"}},
	"policy test": {"policy test [--dir policies] [-v]", "run the Rego policies' tests with OPA's test runner",
		[]string{"fraise policy test", "fraise policy test --dir policies -v"}},
	"policy check": {"policy check [--dir policies]", "compile the Rego policies in strict mode",
		[]string{"fraise policy check --dir policies"}},
	"apikey create": {"apikey create --tenant ID --roles ROLES [flags]", "create an API key; its secret is printed once, only its hash is stored",
		[]string{"fraise apikey create --tenant 11111111-1111-4111-8111-111111111111 --roles analyst --name reports --ttl 720h"}},
	"apikey list": {"apikey list [--tenant ID]", "list API keys (never their secrets)",
		[]string{"fraise apikey list", "fraise apikey list --tenant 11111111-1111-4111-8111-111111111111"}},
	"apikey revoke": {"apikey revoke [--config fraise.toml] ID", "revoke an API key; extauthz stops taking it within authz.api_key_cache_ttl",
		[]string{"fraise apikey revoke 3f6c1a2e-0000-4000-8000-000000000001"}},
	"envoy bootstrap": {"envoy bootstrap (--dir DIR | [--out FILE] [--xds-out FILE])", "write the static and the xDS Envoy bootstraps from fraise.toml",
		[]string{"fraise envoy bootstrap --dir /etc/envoy", "fraise envoy bootstrap --out - > envoy.yaml"}},
	"xds": {"xds [--config fraise.toml] [--ready-file FILE]", "serve the Envoy configuration over xDS (ADS), following fraise.toml's changes",
		[]string{"fraise xds --config /etc/fraise/fraise.toml"}},
	"observers dlq list": {"observers dlq list --tenant ID [--limit N]", "print a tenant's dead-lettered observer jobs, one JSON object a line, secrets redacted",
		[]string{"fraise observers dlq list --tenant 11111111-1111-4111-8111-111111111111 --limit 10"}},
	"observers dlq replay": {"observers dlq replay --tenant ID (--id ENTRY... | --all)", "put dead-lettered observer jobs back on the tenant's queue, attempts reset",
		[]string{"fraise observers dlq replay --tenant 11111111-1111-4111-8111-111111111111 --id 1733551200000-0",
			"fraise observers dlq replay --tenant 11111111-1111-4111-8111-111111111111 --all"}},
	"flight list": {"flight list --token TOKEN [flags]", "list the Flight datasets the token may export, with their columns",
		[]string{`fraise flight list --token "$(fraise token --tenant 11111111-1111-4111-8111-111111111111 --subject alice --roles analyst)"`}},
	"flight get": {"flight get --token TOKEN [flags] DATASET", "export a dataset over Arrow Flight to Arrow IPC, Parquet or CSV",
		[]string{`fraise flight get --token "$TOKEN" --format csv people.users`,
			`fraise flight get --token "$TOKEN" --columns id,title,minutes --where '{"minutes": {"gte": 5}}' --output posts.parquet blog.posts`}},
	"flight sql": {"flight sql --token TOKEN [flags] STATEMENT", "run a Flight SQL SELECT and export its result to Arrow IPC, Parquet or CSV",
		[]string{`fraise flight sql --token "$TOKEN" --format csv "SELECT id, title FROM blog.posts WHERE minutes >= 5 ORDER BY id"`}},
	"observers reconcile": {"observers reconcile [--check] [--config fraise.toml]", "reconcile the observer job queue with the database after a restore (every server does it at start)",
		[]string{"fraise observers reconcile --check", "fraise observers reconcile --config /etc/fraise/fraise.toml"}},
	"backup check": {"backup check [--archive DIR] [--json] [--textfile PATH]", "check the PostgreSQL archive's health: archiver, pending WAL, base backups, gaps",
		[]string{"fraise backup check --archive /var/lib/fraise/archive", "fraise backup check --json --textfile /var/lib/node_exporter/fraise_backup.prom"}},
	"schema generate": {"schema generate [--config fraise.toml] [--schemas public,...] [--out FILE | --check FILE]", "write the GraphQL schema the database's views, tables and functions say (what server.schema = \"auto\" serves)",
		[]string{"fraise schema generate --out schema.graphql", "fraise schema generate --schemas public,blog --check schema.graphql"}},
	"completion": {"completion bash|zsh", "print a shell completion script for bash or zsh",
		[]string{"fraise completion bash > /etc/bash_completion.d/fraise", `source <(fraise completion zsh)`}},
}

// newFlagSet returns a subcommand's FlagSet, whose --help prints the
// command's help (helps[name]) before its flags.
func newFlagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet("fraise "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { printHelp(fs.Output(), name, fs) }
	return fs
}

// printHelp writes name's description, usage, examples and fs's flags.
func printHelp(w io.Writer, name string, fs *flag.FlagSet) {
	h, ok := helps[name]
	if !ok {
		fmt.Fprintf(w, "usage: fraise %s [flags]\n", name)
	} else {
		fmt.Fprintf(w, "fraise %s: %s\n\nusage: fraise %s\n", name, h.Summary, h.Usage)
		if len(h.Examples) > 0 {
			fmt.Fprintln(w, "\nexamples:")
			for _, e := range h.Examples {
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
}

// subcommands returns the subcommands one level under path ("apikey":
// create, list, revoke; "observers": dlq).
func subcommands(path string) []string {
	seen := map[string]bool{}
	for p := range helps {
		if rest, ok := strings.CutPrefix(p, path+" "); ok {
			seen[strings.Fields(rest)[0]] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// subcommandUsage lists path's subcommands with their descriptions.
func subcommandUsage(w io.Writer, path string) {
	fmt.Fprintf(w, "fraise %s: %s\n\nsubcommands:\n", path, groupSummary(path))
	var leaves []string
	for p := range helps {
		if strings.HasPrefix(p, path+" ") {
			leaves = append(leaves, p)
		}
	}
	sort.Strings(leaves)
	for _, p := range leaves {
		fmt.Fprintf(w, "  fraise %-22s %s\n", p, helps[p].Summary)
	}
	fmt.Fprintf(w, "\n`fraise %s <subcommand> --help` shows a subcommand's flags and examples.\n", path)
}

// groupSummary is the description of a command that only groups
// subcommands: its entry in the command table.
func groupSummary(path string) string {
	if c, ok := commands[strings.Fields(path)[0]]; ok {
		return c.summary
	}
	return ""
}

// groupRequest reports whether args (after the program name) stop at a
// command group, and which: `fraise observers` (asked is false: a
// subcommand is missing), `fraise observers --help`, `fraise observers dlq
// -h` (asked is true).
func groupRequest(args []string) (path string, asked, ok bool) {
	for i, a := range args {
		next := strings.TrimSpace(path + " " + a)
		if len(subcommands(next)) == 0 {
			if path == "" || a != "-h" && a != "--help" && a != "-help" && a != "help" {
				return "", false, false
			}
			return path, true, true
		}
		path = next
		if i == len(args)-1 {
			return path, false, true
		}
	}
	return "", false, false
}

// usage is `fraise --help`: the commands, grouped by who runs them.
func usage(w io.Writer) {
	fmt.Fprintln(w, "fraise: a data server for PostgreSQL (GraphQL, observers, Arrow Flight) behind Envoy")
	fmt.Fprintln(w, "\nusage: fraise <command> [subcommand] [flags]")
	shown := map[string]bool{}
	for _, a := range audiences {
		fmt.Fprintf(w, "\nfor %s:\n", a.name)
		for _, n := range a.commands {
			if c, ok := commands[n]; ok {
				fmt.Fprintf(w, "  %-10s %s\n", n, c.summary)
				shown[n] = true
			}
		}
	}
	var more []string
	for n := range commands {
		if !shown[n] {
			more = append(more, n)
		}
	}
	sort.Strings(more)
	if len(more) > 0 {
		fmt.Fprintln(w, "\nmore:")
		for _, n := range more {
			fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
		}
	}
	fmt.Fprintln(w, "\n`fraise <command> --help` shows a command's flags and examples. Every command that reads the")
	fmt.Fprintln(w, "configuration takes --config fraise.toml (or FRAISE_CONFIG); FRAISE_* variables override its keys.")
	fmt.Fprintln(w, "Shell completion: source <(fraise completion bash), or zsh.")
}
