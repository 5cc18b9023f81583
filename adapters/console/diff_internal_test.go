package console

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnifiedDiffApplies checks the export's diff with patch(1): applied
// to the live files it gives the draft's, for changes at the start, in
// the middle, at the end, far apart, without a final newline, and files
// added and removed.
func TestUnifiedDiffApplies(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		t.Skip("no patch(1)")
	}
	lines := func(n int, f func(int) string) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			b.WriteString(f(i) + "\n")
		}
		return b.String()
	}
	base := lines(40, func(i int) string { return "line " + strings.Repeat("x", i%7) + string(rune('a'+i%26)) })
	edit := func(s string, at int, with string) string {
		ls := strings.SplitAfter(s, "\n")
		ls[at] = with + "\n"
		return strings.Join(ls, "")
	}
	tests := []struct {
		name        string
		live, draft []file
	}{
		{"one line changed", []file{{"a.rego", base}}, []file{{"a.rego", edit(base, 20, "changed")}}},
		{"first and last lines", []file{{"a.rego", base}}, []file{{"a.rego", edit(edit(base, 0, "first"), 39, "last")}}},
		{"two changes far apart", []file{{"a.rego", base}}, []file{{"a.rego", edit(edit(base, 3, "near the top"), 30, "near the end")}}},
		{"two changes close", []file{{"a.rego", base}}, []file{{"a.rego", edit(edit(base, 10, "ten"), 14, "fourteen")}}},
		{"lines inserted", []file{{"a.rego", base}}, []file{{"a.rego", strings.Replace(base, "\n", "\ninserted\nand another\n", 1)}}},
		{"no final newline", []file{{"a.rego", base}}, []file{{"a.rego", strings.TrimSuffix(base, "\n")}}},
		{"file added and removed", []file{{"a.rego", base}, {"old.rego", "package old\n"}}, []file{{"a.rego", base}, {"new.rego", "package new\n\nx := 1\n"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.live {
				if err := os.WriteFile(filepath.Join(dir, f.Path), []byte(f.Content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			diff := unifiedDiff(tt.live, tt.draft)
			cmd := exec.Command("patch", "-p1", "--batch", "--silent", "--remove-empty-files")
			cmd.Dir, cmd.Stdin = dir, strings.NewReader(diff)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("patch: %v\n%s\ndiff:\n%s", err, out, diff)
			}
			for _, f := range tt.draft {
				b, err := os.ReadFile(filepath.Join(dir, f.Path))
				if err != nil || string(b) != f.Content {
					t.Errorf("%s after patch: got %q (%v), want %q\ndiff:\n%s", f.Path, b, err, f.Content, diff)
				}
			}
			for _, f := range tt.live {
				kept := false
				for _, d := range tt.draft {
					kept = kept || d.Path == f.Path
				}
				if _, err := os.Stat(filepath.Join(dir, f.Path)); !kept && err == nil {
					t.Errorf("%s: still there, want it removed", f.Path)
				}
			}
		})
	}
}
