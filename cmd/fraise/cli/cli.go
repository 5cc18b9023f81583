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
	"strings"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// Env is what a subcommand may use of the outside world: nothing else reads
// flags, the environment or the standard streams.
type Env struct {
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
	// flagEnv holds FRAISE_* values set by flags (--log-format), which
	// Getenv answers first: a flag is an override like the environment's.
	flagEnv map[string]string
}

type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":     {"run the server: GraphQL over HTTP, Arrow Flight and, when enabled, observers", runServe},
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
	flagEnv := map[string]string{}
	env := Env{Stdout: stdout, Stderr: stderr, flagEnv: flagEnv, Getenv: func(k string) string {
		if v, ok := flagEnv[k]; ok {
			return v
		}
		return getenv(k)
	}}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	if path, asked, ok := groupRequest(args); ok {
		if asked {
			subcommandUsage(env.Stdout, path)
			return nil
		}
		subcommandUsage(env.Stderr, path)
		return fmt.Errorf("usage: fraise %s <%s> [flags]: name a subcommand", path, strings.Join(subcommands(path), "|"))
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("unknown command %q: `fraise --help` lists the commands", args[0])
	}
	err := c.run(ctx, env, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// flags returns a FlagSet for a subcommand with the common --config and
// --profile flags.
func flags(name string, env Env) (*flag.FlagSet, *string) {
	fs := newFlagSet(name, env)
	cfg := fs.String("config", env.Getenv("FRAISE_CONFIG"), "configuration file (TOML)")
	fs.Func("profile", "dev (the development defaults make run uses) or production, which needs every setting named (default $FRAISE_PROFILE, else production)", func(v string) error {
		if v != config.ProfileDev && v != config.ProfileProduction {
			return fmt.Errorf("want dev or production, got %q", v)
		}
		if env.flagEnv == nil {
			return errors.New("not available here")
		}
		env.flagEnv["FRAISE_PROFILE"] = v
		return nil
	})
	return fs, cfg
}

// serverFlags returns the FlagSet of a command that runs servers and logs
// as it goes: --config and --log-format.
func serverFlags(name string, env Env) (*flag.FlagSet, *string) {
	fs, cfg := flags(name, env)
	fs.Func("log-format", "log lines as text (logfmt) or json (default log.format, text)", func(v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("want text or json, got %q", v)
		}
		if env.flagEnv == nil {
			return errors.New("not available here")
		}
		env.flagEnv["FRAISE_LOG_FORMAT"] = v
		return nil
	})
	return fs, cfg
}

// loadServerConfig is loadConfig for a command that starts a server (or
// changes the database): it also refuses to go on without the settings the
// command needs, naming each (config.Require).
func loadServerConfig(path string, env Env, command string) (config.Config, *slog.Logger, error) {
	cfg, log, err := loadConfig(path, env)
	if err != nil {
		return cfg, log, err
	}
	return cfg, log, cfg.Require(command)
}

// loadConfig loads the configuration and a logger configured by it.
func loadConfig(path string, env Env) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(path, env.Getenv)
	if err != nil {
		return cfg, nil, err
	}
	log := newLogger(cfg.Log, env.Stderr)
	for _, d := range cfg.Deprecations { // keys set under their old names
		log.Warn(d.String(), "key", d.Old, "use", d.New)
	}
	return cfg, log, nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(traceHandler{newUniqueAttrs(slog.NewJSONHandler(w, opts))})
	}
	return slog.New(traceHandler{newUniqueAttrs(slog.NewTextHandler(w, opts))})
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
