package security_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the list of attacks in docs/security.md from the table")

// docPath is the page that lists the attacks.
const docPath = "../../docs/security.md"

// The generated list sits between these lines of docs/security.md.
const (
	docBegin = "<!-- attacks: written by `go test ./test/security -run TestDocumentListsEveryAttack -update` from the table; do not edit -->"
	docEnd   = "<!-- end of attacks -->"
)

// attackDoc renders the table: its size, then each class's attacks.
func attackDoc() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe table holds %d attacks in %d classes.\n", len(attacks), len(classes))
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, c := range classes {
		var n int
		for _, a := range attacks {
			if a.class == c {
				n++
			}
		}
		fmt.Fprintf(&b, "\n### %s%s (%d)\n\n| attack | the attacker | must meet |\n| --- | --- | --- |\n", strings.ToUpper(c[:1]), c[1:], n)
		for _, a := range attacks {
			if a.class == c {
				fmt.Fprintf(&b, "| `%s` | %s | %s |\n", a.name, cell(a.does), cell(a.want))
			}
		}
	}
	return b.String()
}

// TestDocumentListsEveryAttack keeps docs/security.md's list of attacks the
// table's: with -update it rewrites the list, otherwise it fails when they
// differ.
func TestDocumentListsEveryAttack(t *testing.T) {
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, docBegin), strings.Index(doc, docEnd)
	if i < 0 || j < i {
		t.Fatalf("%s: want the lines\n%s\n%s\naround the list of attacks", docPath, docBegin, docEnd)
	}
	want := doc[:i+len(docBegin)] + "\n" + attackDoc() + "\n" + doc[j:]
	if *update {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want != doc {
		t.Errorf("%s lists other attacks than the table: run go test ./test/security -run TestDocumentListsEveryAttack -update", docPath)
	}
}
