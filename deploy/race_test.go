package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRaceSkippedTestsRunInTheOrdinaryPass: make test runs the race
// detector's packages only under -race, so a test there that skips under
// -race (it reads raceDetector) must be named in the Makefile's
// RACE_SKIPPED, which runs it without -race; one missing would run nowhere.
func TestRaceSkippedTestsRunInTheOrdinaryPass(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RACE_SKIPPED := (.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no RACE_SKIPPED in the Makefile")
	}
	listed := map[string]bool{}
	for _, n := range strings.Split(string(m[1]), "|") {
		listed[n] = true
	}
	testFunc := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	skipping := 0
	for _, root := range []string{"../core", "../envoy", "../extauthz", "../adapters", "../cmd", "../internal", "../test/observers", "../test/loadgen"} {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			src := string(b)
			for _, loc := range testFunc.FindAllStringSubmatchIndex(src, -1) {
				end := len(src)
				if next := testFunc.FindAllStringIndex(src[loc[1]:], 1); next != nil {
					end = loc[1] + next[0][0]
				}
				if strings.Contains(src[loc[0]:end], "if raceDetector") {
					skipping++
					if name := src[loc[2]:loc[3]]; !listed[name] {
						t.Errorf("%s (%s) skips under -race but is not in the Makefile's RACE_SKIPPED: it would run nowhere", name, p)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if skipping != len(listed) {
		t.Errorf("RACE_SKIPPED names %d tests, %d skip under -race", len(listed), skipping)
	}
}
