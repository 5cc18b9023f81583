package web

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestDistNotStale holds the committed dist/ to the sources it was built
// from: build.mjs records in dist/SOURCES.sha256 the hash of every source
// (build.mjs, package.json, package-lock.json, src/**) and of every file
// it wrote. A source edited without `make console`, or a dist file edited
// by hand, fails here, without needing Node to rebuild.
func TestDistNotStale(t *testing.T) {
	recorded := readSums(t, "dist/SOURCES.sha256")
	current := map[string]string{}
	for _, p := range []string{"build.mjs", "package.json", "package-lock.json"} {
		current[p] = sum(t, p)
	}
	for _, root := range []string{"src", "dist"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || p == filepath.Join("dist", "SOURCES.sha256") {
				return err
			}
			current[filepath.ToSlash(p)] = sum(t, p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var problems []string
	for p, h := range current {
		switch r, ok := recorded[p]; {
		case !ok:
			problems = append(problems, p+" is not in the last build")
		case r != h:
			problems = append(problems, p+" changed since the last build")
		}
	}
	for p := range recorded {
		if _, ok := current[p]; !ok {
			problems = append(problems, p+" is gone since the last build")
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Errorf("adapters/console/web/dist is stale: run make console\n%s", strings.Join(problems, "\n"))
	}
}

// TestAssetsShell checks what the server relies on: the two pages and
// their assets are embedded, and neither page has an inline script, an
// inline style or a style attribute, which the console's CSP refuses.
func TestAssetsShell(t *testing.T) {
	inline := []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>[^<]+</script>`),
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle=`),
		regexp.MustCompile(`(?i)\son[a-z]+=`),
		regexp.MustCompile(`(?i)(?:src|href)="(?:https?:)?//`),
	}
	for _, tc := range []struct {
		page   string
		assets []string
	}{
		{"index.html", []string{"assets/app.js", "assets/app.css"}},
		{"login.html", []string{"assets/login.js", "assets/login.css"}},
	} {
		t.Run(tc.page, func(t *testing.T) {
			b, err := fs.ReadFile(Assets(), tc.page)
			if err != nil {
				t.Fatal(err)
			}
			for _, re := range inline {
				if m := re.Find(b); m != nil {
					t.Errorf("%s has %q, which the CSP refuses or which loads from elsewhere", tc.page, m)
				}
			}
			for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAll(b, -1) {
				if !strings.Contains(string(tag), " src=") {
					t.Errorf("%s has an inline script %q, which the CSP refuses", tc.page, tag)
				}
			}
			for _, a := range tc.assets {
				if !strings.Contains(string(b), `"`+a+`"`) {
					t.Errorf("%s does not load %s", tc.page, a)
				}
				if _, err := fs.Stat(Assets(), a); err != nil {
					t.Errorf("%s: %v (run make console)", a, err)
				}
			}
		})
	}
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run make console)", err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		h, p, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("%s: bad line %q (run make console)", path, sc.Text())
		}
		sums[p] = h
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
