// Package cli is the fraise command: each subcommand's wiring of config,
// adapters and servers, in a file of its own. It is a package rather than
// main so that end-to-end tests call the very Run the binary runs, with
// their own arguments, environment and output.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// Env is what a subcommand may use of the outside world: nothing else reads
// flags, the environment or the standard streams.
type Env struct {
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":     {"run the core: GraphQL over HTTP, Arrow Flight and, when enabled, observers", runServe},
		"authz":     {"run extauthz: Envoy's external authorization service", runAuthz},
		"ratelimit": {"run the global rate limiter (envoyproxy/ratelimit)", runRateLimit},
		"dev":       {"run the whole stack in one process for development", runDev},
		"migrate":   {"apply database migrations (--demo adds the demo schema and data)", runMigrate},
		"certs":     {"write a development CA, certificates and signing keys under .dev/", runCerts},
		"token":     {"mint a development JWT that extauthz trusts in dev mode", runToken},
		"policy":    {"policy test | policy check: run the Rego tests, compile strictly", runPolicy},
		"apikey":    {"apikey create | list | revoke: manage API keys (the secret is shown once)", runAPIKey},
		"envoy":     {"envoy bootstrap: write the static and the xDS Envoy bootstraps", runEnvoy},
		"xds":       {"serve the Envoy configuration over xDS (ADS), following fraise.toml", runXDS},
		"schema":    {"schema generate: write the GraphQL schema the database's views and functions say", runSchema},
	}
}

// Run runs the fraise command line args (without the program name).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := Env{Getenv: getenv, Stdout: stdout, Stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	err := c.run(ctx, env, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: fraise <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --config fraise.toml (or FRAISE_CONFIG); FRAISE_* variables override keys.")
}

// flags returns a FlagSet for a subcommand with the common --config flag.
func flags(name string, env Env) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("fraise "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfg := fs.String("config", env.Getenv("FRAISE_CONFIG"), "configuration file (TOML)")
	return fs, cfg
}

// loadConfig loads the configuration and a logger configured by it.
func loadConfig(path string, env Env) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(path, env.Getenv)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, newLogger(cfg.Log, env.Stderr), nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(newUniqueAttrs(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(newUniqueAttrs(slog.NewTextHandler(w, opts)))
}

// readFileRef reads a file named directly or as a file:// / env:// reference.
// Other references (vault://) get config.Resolve's explanation rather than
// a "no such file" for a path that was never one.
func readFileRef(ref string, getenv func(string) string) ([]byte, error) {
	if strings.HasPrefix(ref, "env://") || strings.HasPrefix(ref, "vault://") {
		v, err := config.Resolve(ref, getenv)
		return []byte(v), err
	}
	return os.ReadFile(strings.TrimPrefix(ref, "file://"))
}
