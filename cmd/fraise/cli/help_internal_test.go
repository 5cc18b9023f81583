package cli

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// runHelp runs `fraise <path> --help` and returns what it printed.
func runHelp(t *testing.T, path string) string {
	t.Helper()
	var out bytes.Buffer
	args := append(strings.Fields(path), "--help")
	if err := Run(context.Background(), args, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("fraise %s --help: %v\n%s", path, err, out.String())
	}
	return out.String()
}

// shownFlags returns the flags a --help output lists.
func shownFlags(help string) []string {
	var fl []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`).FindAllStringSubmatch(help, -1) {
		fl = append(fl, m[1])
	}
	return fl
}

// TestEveryCommandExplainsItself walks every command's and subcommand's
// --help: each has a one-line description, a usage line and at least one
// example of itself, and shows only the flags it reads.
func TestEveryCommandExplainsItself(t *testing.T) {
	for name := range commands {
		if _, leaf := helps[name]; !leaf && len(subcommands(name)) == 0 {
			t.Errorf("command %s has no help entry and no subcommands", name)
		}
	}
	for path, h := range helps {
		t.Run(path, func(t *testing.T) {
			got := runHelp(t, path)
			first, _, _ := strings.Cut(got, "\n")
			if h.Summary == "" || strings.Contains(h.Summary, "\n") || first != "fraise "+path+": "+h.Summary {
				t.Errorf("got first line %q, want \"fraise %s: <one-line description>\"", first, path)
			}
			if !strings.Contains(got, "\nusage: fraise "+path) {
				t.Errorf("got\n%s\nwant a usage line", got)
			}
			examples := 0
			for _, e := range h.Examples {
				if strings.Contains(e, "fraise "+path) && strings.Contains(got, "  "+e+"\n") {
					examples++
				}
			}
			if examples == 0 {
				t.Errorf("got\n%s\nwant at least one example of fraise %s", got, path)
			}
		})
	}
	// What the first users met (issue 19): flags shown that the command
	// ignores, or that belong to a sibling.
	for _, tt := range []struct {
		path    string
		notShow []string
	}{
		{"token", []string{"config"}},
		{"certs", []string{"config"}},
		{"policy test", []string{"config"}},
		{"policy check", []string{"config", "v"}},
		{"observers dlq list", []string{"id", "all"}},
		{"observers dlq replay", []string{"limit"}},
		{"apikey revoke", []string{"tenant", "roles"}},
		{"apikey list", []string{"roles", "ttl"}},
	} {
		for _, f := range shownFlags(runHelp(t, tt.path)) {
			if slices.Contains(tt.notShow, f) {
				t.Errorf("fraise %s --help shows --%s, which it does not read", tt.path, f)
			}
		}
	}
	// A group lists its subcommands.
	for _, group := range []string{"apikey", "policy", "observers", "observers dlq", "flight", "envoy"} {
		got := runHelp(t, group)
		for _, sub := range subcommands(group) {
			if !strings.Contains(got, "fraise "+group+" "+sub) {
				t.Errorf("fraise %s --help: got\n%s\nwant subcommand %s listed", group, got, sub)
			}
		}
	}
}

// TestFlagsAreRead reads this package's source: a flag whose value is
// thrown away (assigned to _, or its definition's result unused) is shown
// by --help but never read. Every FlagSet is built through
// newFlagSet/flags, whose name must have a help entry.
func TestFlagsAreRead(t *testing.T) {
	fset := token.NewFileSet()
	files, _ := filepath.Glob("*.go")
	defs := map[string]bool{"String": true, "Bool": true, "Int": true, "Int64": true, "Uint": true, "Float64": true, "Duration": true}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		isFlagDef := func(e ast.Expr) (string, bool) {
			call, ok := e.(*ast.CallExpr)
			if !ok {
				return "", false
			}
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				return fn.Name, fn.Name == "flags"
			case *ast.SelectorExpr:
				if x, ok := fn.X.(*ast.Ident); ok && x.Name == "fs" && defs[fn.Sel.Name] {
					return "fs." + fn.Sel.Name, true
				}
			}
			return "", false
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				if len(n.Rhs) != 1 {
					return true
				}
				if what, ok := isFlagDef(n.Rhs[0]); ok {
					// flags returns (fs, cfg): cfg is the --config flag.
					lhs := n.Lhs[len(n.Lhs)-1]
					if id, ok := lhs.(*ast.Ident); ok && id.Name == "_" {
						t.Errorf("%s: %s's flag is assigned to _: --help shows a flag the command never reads", fset.Position(n.Pos()), what)
					}
				}
			case *ast.ExprStmt:
				if what, ok := isFlagDef(n.X); ok {
					t.Errorf("%s: %s's result is unused: --help shows a flag the command never reads", fset.Position(n.Pos()), what)
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && (id.Name == "flags" || id.Name == "serverFlags" || id.Name == "newFlagSet" || id.Name == "newFlightFlags") && len(n.Args) > 0 {
					if lit, ok := n.Args[0].(*ast.BasicLit); ok {
						if _, ok := helps[strings.Trim(lit.Value, `"`)]; !ok {
							t.Errorf("%s: no help entry for %s", fset.Position(n.Pos()), lit.Value)
						}
					}
				}
			}
			return true
		})
	}
}

// TestUsageGroupsByAudience: `fraise --help` names every command, under
// who runs it.
func TestUsageGroupsByAudience(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, a := range []string{"for developers:", "for operators:", "for security teams:"} {
		if !strings.Contains(got, "\n"+a+"\n") {
			t.Errorf("got\n%s\nwant a group %q", got, a)
		}
	}
	for name := range commands {
		if !regexp.MustCompile(`(?m)^  ` + name + ` `).MatchString(got) {
			t.Errorf("got\n%s\nwant command %s listed", got, name)
		}
	}
}

// TestBashCompletion sources `fraise completion bash` in bash and asks it
// to complete command lines.
func TestBashCompletion(t *testing.T) {
	var script bytes.Buffer
	if err := Run(context.Background(), []string{"completion", "bash"}, func(string) string { return "" }, &script, &script); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fraise.bash")
	if err := os.WriteFile(path, script.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, line string
		want       []string
	}{
		{"a command", "fraise obs", []string{"observers"}},
		{"every command", "fraise ", nil},
		{"a subcommand", "fraise observers dlq l", []string{"list"}},
		{"flags of a command", "fraise token --t", []string{"--tenant", "--tier", "--ttl"}},
		{"flags after flags", "fraise token --tenant x --s", []string{"--scopes", "--subject"}},
		{"a subcommand's own flags", "fraise observers dlq list --", []string{"--config", "--limit", "--profile", "--tenant"}},
		{"flight get", "fraise flight get --f", []string{"--format"}},
		{"the shell", "fraise completion ", []string{"bash", "zsh"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			words := strings.Split(tt.line, " ")
			quoted := make([]string, len(words))
			for i, w := range words {
				quoted[i] = shQuote(w)
			}
			prog := `source ` + shQuote(path) + `; COMP_WORDS=(` + strings.Join(quoted, " ") + `); COMP_CWORD=` +
				string(rune('0'+len(words)-1)) + `; _fraise; printf '%s\n' "${COMPREPLY[@]}"`
			out, err := exec.Command("bash", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			want := tt.want
			if want == nil {
				for name := range commands {
					want = append(want, name)
				}
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%q: got %v, want %v", tt.line, got, want)
			}
		})
	}
}

// TestZshCompletion: the zsh script holds the same tree as the bash one
// (zsh is not installed here to run it): every command path and its
// flags, and registers itself with compdef.
func TestZshCompletion(t *testing.T) {
	var script bytes.Buffer
	if err := Run(context.Background(), []string{"completion", "zsh"}, func(string) string { return "" }, &script, &script); err != nil {
		t.Fatal(err)
	}
	got := script.String()
	if !strings.HasPrefix(got, "#compdef fraise\n") || !strings.Contains(got, "\ncompdef _fraise fraise\n") {
		t.Errorf("got\n%s\nwant a #compdef header and a compdef registration", got)
	}
	for path, words := range completionTree(context.Background(), func(string) string { return "" }) {
		if want := "  " + shQuote(path) + " " + shQuote(strings.Join(words, " ")) + "\n"; !strings.Contains(got, want) {
			t.Errorf("got\n%s\nwant the line %q", got, want)
		}
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command(zsh, "-n", "-c", got).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
}

// TestErrorsNameTheFlagAndTheFix: a command line that cannot run is
// refused with the flag or key at fault and what to do.
func TestErrorsNameTheFlagAndTheFix(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown command", []string{"tokn"}, []string{`"tokn"`, "fraise --help"}},
		{"group without subcommand", []string{"observers", "dlq"}, []string{"list|replay"}},
		{"token without tenant", []string{"token", "--subject", "alice"}, []string{"--tenant", "e.g. fraise token --tenant"}},
		{"flight without token", []string{"flight", "list", "--config", "/nonexistent.toml"}, []string{"config"}},
		{"flight get without token", []string{"flight", "get", "people.users"}, []string{"--token", "fraise token"}},
		{"flight get bad where", []string{"flight", "get", "--where", "{", "people.users"}, []string{"--where", "not JSON"}},
		{"flight get no dataset", []string{"flight", "get"}, []string{"fraise flight list"}},
		{"flight bad format", []string{"flight", "get", "--format", "xlsx", "people.users"}, []string{"--format", "arrow, parquet or csv"}},
		{"completion without shell", []string{"completion"}, []string{"bash or zsh"}},
		{"dlq without tenant", []string{"observers", "dlq", "list"}, []string{"--tenant"}},
		{"apikey revoke without id", []string{"apikey", "revoke", "--config", "/nonexistent.toml"}, []string{"config"}},
		{"log format", []string{"xds", "--log-format", "yaml"}, []string{"log-format", "text or json"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(context.Background(), tt.args, func(string) string { return "" }, &out, &out)
			if err == nil {
				t.Fatalf("got no error, want one naming %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) && !strings.Contains(out.String(), w) {
					t.Errorf("got %q, want %q in it", err, w)
				}
			}
		})
	}
}
