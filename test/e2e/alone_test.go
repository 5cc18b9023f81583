package e2e_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMeasuringTestsRunAlone: this package's tests run side by side in one
// process, so a test that measures the process (its goroutines, its heap)
// must not be parallel, or the others' stacks move its figures (as they
// did TestFlightStreamsMillionsOfRows's goroutine count). Go runs the
// non-parallel tests before the parallel ones resume, alone.
func TestMeasuringTestsRunAlone(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	testFunc := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\) \{`)
	measuring := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		locs := testFunc.FindAllStringSubmatchIndex(src, -1)
		for i, loc := range locs {
			end := len(src)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			body := src[loc[1]:end]
			// The needles are built so that this test's own text is none.
			if !strings.Contains(body, "runtime."+"NumGoroutine") && !strings.Contains(body, "runtime."+"ReadMemStats") {
				continue
			}
			measuring++
			if strings.Contains(body, "t.Parallel()") {
				t.Errorf("%s (%s) measures the process's goroutines or heap and is parallel", src[loc[2]:loc[3]], f)
			}
		}
	}
	if measuring == 0 {
		t.Error("found no test that measures the process: the check reads the wrong files")
	}
}
