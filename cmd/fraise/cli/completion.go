package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

func init() {
	commands["completion"] = command{"completion bash|zsh: print a shell completion script", runCompletion}
}

// runCompletion is `fraise completion bash|zsh`.
func runCompletion(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("completion", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "bash" && fs.Arg(0) != "zsh" {
		return errors.New("completion: name the shell, bash or zsh: fraise completion bash > /etc/bash_completion.d/fraise")
	}
	tree := completionTree(ctx, env.Getenv)
	if fs.Arg(0) == "bash" {
		writeBashCompletion(env.Stdout, tree)
	} else {
		writeZshCompletion(env.Stdout, tree)
	}
	return nil
}

// completionTree maps each command path, "fraise" for the root, to the
// words that may follow it: its subcommands, or the flags its --help
// shows (so the completion offers what the command reads, and no more).
func completionTree(ctx context.Context, getenv func(string) string) map[string][]string {
	tree := map[string][]string{}
	add := func(path, word string) {
		for _, w := range tree[path] {
			if w == word {
				return
			}
		}
		tree[path] = append(tree[path], word)
	}
	for name := range commands {
		add("fraise", name)
	}
	for path := range helps {
		words := strings.Fields(path)
		for i := range words {
			parent := strings.Join(append([]string{"fraise"}, words[:i]...), " ")
			add(parent, words[i])
		}
		var out bytes.Buffer
		_ = Run(ctx, append(words, "--help"), getenv, &out, &out)
		for _, line := range strings.Split(out.String(), "\n") {
			if f, ok := strings.CutPrefix(line, "  -"); ok && f != "" && f[0] != ' ' && f[0] != '-' {
				add("fraise "+path, "--"+strings.Fields(f)[0])
			}
		}
	}
	// completion's one argument is the shell.
	tree["fraise completion"] = []string{"bash", "zsh"}
	for _, ws := range tree {
		sort.Strings(ws)
	}
	return tree
}

func sortedKeys(tree map[string][]string) []string {
	keys := make([]string, 0, len(tree))
	for k := range tree {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeBashCompletion writes a bash completion function: it walks the words
// typed so far down the tree (flags and their values do not move it) and
// offers the words under the node reached.
func writeBashCompletion(w io.Writer, tree map[string][]string) {
	fmt.Fprintln(w, "# bash completion for fraise: source <(fraise completion bash)")
	fmt.Fprintln(w, "declare -gA _fraise_words=(")
	for _, k := range sortedKeys(tree) {
		fmt.Fprintf(w, "  [%s]=%s\n", shQuote(k), shQuote(strings.Join(tree[k], " ")))
	}
	fmt.Fprint(w, `)
_fraise() {
  local node=fraise cand i
  for ((i = 1; i < COMP_CWORD; i++)); do
    cand="$node ${COMP_WORDS[i]}"
    if [[ -n "${_fraise_words[$cand]+x}" ]]; then node=$cand; fi
  done
  COMPREPLY=($(compgen -W "${_fraise_words[$node]}" -- "${COMP_WORDS[COMP_CWORD]}"))
}
complete -o default -F _fraise fraise
`)
}

// writeZshCompletion writes the same walk as a zsh completion function.
func writeZshCompletion(w io.Writer, tree map[string][]string) {
	fmt.Fprintln(w, "#compdef fraise")
	fmt.Fprintln(w, "# zsh completion for fraise: source <(fraise completion zsh), after compinit")
	fmt.Fprintln(w, "typeset -gA _fraise_words")
	fmt.Fprintln(w, "_fraise_words=(")
	for _, k := range sortedKeys(tree) {
		fmt.Fprintf(w, "  %s %s\n", shQuote(k), shQuote(strings.Join(tree[k], " ")))
	}
	fmt.Fprint(w, `)
_fraise() {
  local node=fraise cand i
  for ((i = 2; i < CURRENT; i++)); do
    cand="$node ${words[i]}"
    if (( ${+_fraise_words[$cand]} )); then node=$cand; fi
  done
  compadd -- ${=_fraise_words[$node]}
}
compdef _fraise fraise
`)
}

// shQuote quotes s for bash and zsh alike.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
