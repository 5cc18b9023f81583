package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/fraise-dev/fraise/extauthz/policy"
)

// runPolicy is the security team's one command: `fraise policy test` runs
// the Rego tests with OPA's test runner, `fraise policy check` compiles the
// policies in strict mode. Both exit non-zero on any failure.
func runPolicy(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || (args[0] != "test" && args[0] != "check") {
		return errors.New("usage: fraise policy test|check [--dir policies] [-v]")
	}
	sub := args[0]
	fs := newFlagSet("policy "+sub, env)
	dir := fs.String("dir", "", "policy directory (default: the policies built into this binary)")
	verbose := new(bool)
	if sub == "test" {
		verbose = fs.Bool("v", false, "list every test, passed or not")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	fsys := policyFS(*dir)
	where := *dir
	if where == "" {
		where = "built-in policies"
	}
	if sub == "check" {
		if err := policy.Check(fsys); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s: compiled in strict mode, no errors\n", where)
		return nil
	}
	report, err := policy.Test(ctx, fsys)
	if werr := report.Write(env.Stdout, *verbose); werr != nil {
		return werr
	}
	return err
}
