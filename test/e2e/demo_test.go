package e2e_test

import (
	"bytes"
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/test/stack"
)

// TestDemoBannerCommandsWork runs `fraise dev --demo`, as `make run` does,
// and pastes each command its banner prints: the GraphQL query (curl), the
// Flight export (the CLI) and the insert that fires the demo's observer
// rule (curl), whose delivery the demo receiver then prints. Then the rest
// of the Flight CLI: list, and a Flight SQL export to Parquet.
func TestDemoBannerCommandsWork(t *testing.T) {
	t.Parallel()
	if _, err := osexec.LookPath("curl"); err != nil {
		t.Fatalf("the banner's commands need curl: %v", err)
	}
	out := stack.NewOutput()
	s := stack.StartWith(t, stack.Options{Demo: true, Stdout: out, PerTenant: 1000, Env: slowMachineEnv})
	if !out.Wait("Other tokens:", 30*time.Second) {
		t.Fatalf("no banner after ready:\n%s", out.String())
	}
	cmds := bannerCommands(out.String())
	if len(cmds) != 3 {
		t.Fatalf("got %d commands in the banner, want 3 (GraphQL, Flight, insert):\n%s", len(cmds), out.String())
	}
	shell := func(t *testing.T, cmd string) string {
		t.Helper()
		if !strings.HasPrefix(cmd, "curl ") {
			t.Fatalf("got %q, want a curl command", cmd)
		}
		b, err := osexec.Command("bash", "-c", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, b)
		}
		return string(b)
	}

	t.Run("graphql", func(t *testing.T) {
		got := shell(t, cmds[0])
		for _, want := range []string{`"name":"Alice"`, `"name":"Bob"`, `"email":"a***@acme.test"`} {
			if !strings.Contains(strings.ReplaceAll(got, " ", ""), want) {
				t.Errorf("got %s, want %s in it", got, want)
			}
		}
		if strings.Contains(got, "alice@acme.test") || strings.Contains(got, "Carol") {
			t.Errorf("got %s: an unmasked email or another tenant's user", got)
		}
	})

	t.Run("flight export", func(t *testing.T) {
		words := shellWords(t, cmds[1])
		if len(words) < 3 || words[0] != "bin/fraise" || words[1] != "flight" {
			t.Fatalf("got %q, want a bin/fraise flight command", cmds[1])
		}
		stdout, stderr := fraise(t, s, words[1:]...)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 3 || lines[0] != "id,name,email,created_at" {
			t.Fatalf("got\n%s\nwant a CSV header id,name,email,created_at and Acme's two users", stdout)
		}
		if !strings.Contains(stdout, "a0000000-0000-4000-8000-00000000000a,Alice,a***@acme.test,") {
			t.Errorf("got\n%s\nwant Alice's row with her id as text and her email masked", stdout)
		}
		if strings.Contains(stdout, "alice@acme.test") || strings.Contains(stdout, "Carol") {
			t.Errorf("got\n%s\nan unmasked email or another tenant's user", stdout)
		}
		if !strings.Contains(stderr, "fraise flight: 2 rows in ") {
			t.Errorf("got stderr %q, want the progress line", stderr)
		}
	})

	t.Run("observer insert", func(t *testing.T) {
		got := shell(t, cmds[2])
		if !strings.Contains(got, "CreatePostSuccess") || !strings.Contains(got, "Hello, observers") {
			t.Fatalf("got %s, want the created post", got)
		}
		const want = `observer delivery: rule "demo: new posts", INSERT on public.posts of tenant 11111111-1111-4111-8111-111111111111:`
		if !out.Wait(`"title":"Hello, observers"`, 30*time.Second) {
			t.Fatalf("no delivery of the new post printed within 30s; got\n%s\nwant %s", out.String(), want)
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, "observer delivery:") && !strings.HasPrefix(line, want) {
				t.Errorf("got %s, want %s", line, want)
			}
			if strings.Contains(line, "Hello from Acme") {
				t.Errorf("got %s: the demo's seed posts are no events", line)
			}
		}
	})

	// The rest of the Flight CLI, with the token and flags the banner gave.
	words := shellWords(t, cmds[1])
	common := words[3 : len(words)-3] // --config … --addr … --token …
	t.Run("flight list", func(t *testing.T) {
		stdout, _ := fraise(t, s, append([]string{"flight", "list"}, common...)...)
		for _, want := range []string{"blog.posts\tid uuid, title text,", "people.users\tid uuid, name text, email text, created_at timestamptz"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("got\n%s\nwant %q", stdout, want)
			}
		}
	})
	t.Run("flight sql to parquet", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "posts.parquet")
		args := append([]string{"flight", "sql"}, common...)
		args = append(args, "--output", path, "SELECT id, title, internal_note FROM blog.posts WHERE minutes >= 5 ORDER BY id")
		_, stderr := fraise(t, s, args...)
		if !strings.Contains(stderr, "parquet to "+path) {
			t.Errorf("got stderr %q, want the progress line naming %s", stderr, path)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		pf, err := file.NewParquetReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		rdr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := rdr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		// Acme's posts of 5 minutes or more: "Anvils, a review" (7) and
		// "Rockets for beginners" (12).
		if tbl.NumRows() != 2 || tbl.NumCols() != 3 {
			t.Errorf("got %d rows of %d columns, want 2 of 3", tbl.NumRows(), tbl.NumCols())
		}
	})
}

// fraise runs the fraise command line args as the stack's environment
// would, returning its standard output and error.
func fraise(t *testing.T, s *stack.Stack, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := cli.Run(context.Background(), args, s.Getenv, &out, &errb); err != nil {
		t.Fatalf("fraise %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

// bannerCommands returns the commands a banner holds, each joined from its
// continued lines, as a shell reads what a user pastes.
func bannerCommands(banner string) []string {
	var cmds []string
	var cur strings.Builder
	for _, line := range strings.Split(banner, "\n") {
		if cur.Len() == 0 && !strings.HasPrefix(line, "curl ") && !strings.HasPrefix(line, "bin/fraise ") {
			continue
		}
		cont := strings.HasSuffix(line, `\`)
		cur.WriteString(strings.TrimSuffix(line, `\`))
		if !cont {
			cmds = append(cmds, cur.String())
			cur.Reset()
		}
	}
	return cmds
}

// shellWords splits a command line as a shell does for what the banner
// prints: words separated by blanks, single-quoted words kept whole.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '"' || r == '$' || r == '`' || r == '\\':
			t.Fatalf("%q: the banner's CLI command should need no shell but quotes", line)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
