package policy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// ErrTestsFailed is returned by Test when any Rego test fails or errors.
var ErrTestsFailed = errors.New("policy tests failed")

// ErrNoTests is returned by Test for a folder without tests: a security
// policy nobody tested is not one extauthz will load.
var ErrNoTests = errors.New("policy has no tests (no test_ rules in _test.rego files)")

// TestTimeout bounds each Rego test.
const TestTimeout = 10 * time.Second

// TestResult is the outcome of one Rego test.
type TestResult struct {
	Package string
	Name    string
	File    string
	Row     int
	Pass    bool
	Skip    bool
	// Err is the evaluation error of a test that errored, "" otherwise.
	Err      string
	Duration time.Duration
	// Output is what the test printed (print() calls).
	Output string
}

// Report is the outcome of a policy's Rego tests, in file and line order.
type Report struct {
	Revision string
	Results  []TestResult
	Passed   int
	Failed   int // failed or errored
	Skipped  int
}

// Test runs the Rego tests of fsys (rules named test_* in any module, by
// convention in _test.rego files) against its modules and data. It returns
// the report with ErrTestsFailed when any test failed or errored, and
// ErrNoTests when there were none. It backs `fraise policy test`.
func Test(ctx context.Context, fsys fs.FS) (Report, error) {
	src, err := Load(fsys)
	if err != nil {
		return Report{}, err
	}
	return src.Test(ctx)
}

// Test runs the source's Rego tests; see the package-level Test.
func (s *Source) Test(ctx context.Context) (Report, error) {
	rep := Report{Revision: s.Revision}
	mods := maps.Clone(s.Modules)
	maps.Copy(mods, s.Tests)
	// Builtin errors (a sprintf with the wrong arguments, a type error)
	// fail a test instead of quietly making a rule undefined.
	r := tester.NewRunner().
		SetStore(s.Store()).
		SetModules(mods).
		SetDefaultRegoVersion(ast.RegoV1).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true).
		SetTimeout(TestTimeout)
	ch, err := r.RunTests(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("policy: tests: %w", err)
	}
	for res := range ch {
		tr := TestResult{
			Package:  strings.TrimPrefix(res.Package, "data."),
			Name:     res.Name,
			Pass:     res.Pass(),
			Skip:     res.Skip,
			Duration: res.Duration,
			Output:   string(res.Output),
		}
		if res.Location != nil {
			tr.File, tr.Row = res.Location.File, res.Location.Row
		}
		if res.Error != nil {
			tr.Err = res.Error.Error()
		}
		switch {
		case tr.Pass:
			rep.Passed++
		case tr.Skip:
			rep.Skipped++
		default:
			rep.Failed++
		}
		rep.Results = append(rep.Results, tr)
	}
	slices.SortFunc(rep.Results, func(a, b TestResult) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Row, b.Row), cmp.Compare(a.Name, b.Name))
	})
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if rep.Failed > 0 {
		return rep, fmt.Errorf("%w: %d of %d failed: %s", ErrTestsFailed, rep.Failed, len(rep.Results), strings.Join(rep.failedNames(), ", "))
	}
	if rep.Passed == 0 {
		return rep, ErrNoTests
	}
	return rep, nil
}

func (r Report) failedNames() []string {
	var names []string
	for _, t := range r.Results {
		if !t.Pass && !t.Skip {
			names = append(names, t.Package+"."+t.Name)
		}
	}
	return names
}

// Write prints the report the way `opa test` does: one line per failed or
// errored test (every test when verbose), then the totals as
// "policy: N passed, N failed" (", N skipped").
func (r Report) Write(w io.Writer, verbose bool) error {
	for _, t := range r.Results {
		var outcome string
		switch {
		case t.Pass:
			if !verbose {
				continue
			}
			outcome = "PASS"
		case t.Skip:
			outcome = "SKIPPED"
		case t.Err != "":
			outcome = "ERROR"
		default:
			outcome = "FAIL"
		}
		if _, err := fmt.Fprintf(w, "%s:%d: %s.%s: %s (%v)\n", t.File, t.Row, t.Package, t.Name, outcome, t.Duration.Round(time.Microsecond)); err != nil {
			return err
		}
		if t.Err != "" {
			fmt.Fprintf(w, "  %s\n", t.Err)
		}
		if t.Output != "" && (!t.Pass || verbose) {
			for line := range strings.Lines(t.Output) {
				fmt.Fprintf(w, "  | %s", line)
			}
			fmt.Fprintln(w)
		}
	}
	line := fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed)
	if r.Skipped > 0 {
		line += fmt.Sprintf(", %d skipped", r.Skipped)
	}
	// The totals stand alone on their line, after one word and a colon, so
	// tools that read "N passed, N failed" lines find them.
	_, err := fmt.Fprintf(w, "revision %s\npolicy: %s\n", r.Revision, line)
	return err
}
