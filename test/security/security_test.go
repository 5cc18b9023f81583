package security_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// attack is one row of the suite: something an attacker does to the
// running stack, and what must happen.
type attack struct {
	// name is the attack's id: unique, lower-case words joined by
	// hyphens; docs/security.md lists it.
	name string
	// class groups attacks in the report and the documentation.
	class string
	// does says what the attacker does, want what must happen.
	does, want string
	// slow attacks wait on Envoy's timeouts: they run in parallel with
	// each other after the others, which count what reaches extauthz
	// and the server and so must not overlap with any other request.
	slow bool
	// run performs the attack and checks its outcome, failing t when the
	// stack did not refuse as it must; it returns what was observed, for
	// the report line ("refused 401 UNAUTHENTICATED by extauthz").
	run func(t *testing.T, e *env) string
}

// The classes, in the order the report and the documentation list them.
const (
	classTransport = "transport"
	classToken     = "token"
	classHeaders   = "forged headers"
	classAssertion = "assertion"
	classRequest   = "request decoding"
	classLimits    = "limits"
	classTenancy   = "tenancy"
	classObservers = "observers"
	classFlight    = "flight"
	classPaths     = "paths"
	classSlow      = "slow clients"
	classConfig    = "configuration"
	classConsole   = "console"
)

var classes = []string{classTransport, classToken, classHeaders, classAssertion, classRequest, classLimits,
	classTenancy, classObservers, classFlight, classPaths, classSlow, classConfig, classConsole}

// attacks is the suite, in the order it runs and reports.
var attacks = slices.Concat(transportAttacks, tokenAttacks, headerAttacks, assertionAttacks, requestAttacks,
	limitAttacks, tenancyAttacks, observerAttacks, flightAttacks, pathAttacks, slowAttacks, configAttacks, consoleAttacks)

// result is what one attack's run gave.
type result struct {
	ran    bool
	failed bool
	got    string
}

// TestAttacks runs every attack against one stack and prints one line per
// attack and a total on standard output (shown by `go test -v`, which
// `make test` runs this package with).
func TestAttacks(t *testing.T) {
	harness.SkipShort(t)
	e := newEnv(t)
	start := time.Now()
	results := make([]result, len(attacks))
	// Registered after the stack's cleanup, so it runs before the stack
	// stops, once every attack (the parallel ones too) has finished.
	t.Cleanup(func() { report(results, time.Since(start)) })
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			if a.slow {
				t.Parallel()
			}
			var got string
			defer func() {
				results[i] = result{ran: true, failed: t.Failed(), got: got}
			}()
			got = a.run(t, e)
		})
	}
}

// report prints the suite's lines: PASS or FAIL and the attack's name with
// what was observed, then the total.
func report(results []result, took time.Duration) {
	var ran, refused int
	var failed []string
	for i, r := range results {
		if !r.ran {
			continue
		}
		ran++
		verdict := "PASS"
		if r.failed {
			verdict = "FAIL"
			failed = append(failed, attacks[i].name)
		} else {
			refused++
		}
		got := r.got
		if got == "" && r.failed {
			got = "not refused as it must be (see the failure above)"
		}
		fmt.Printf("%s %s: %s\n", verdict, attacks[i].name, got)
	}
	fmt.Printf("security: %d attacks, %d refused as expected (%s)\n", ran, refused, took.Round(time.Second))
	if len(failed) > 0 {
		fmt.Printf("security: VULNERABLE to %s\n", strings.Join(failed, ", "))
	}
}

// TestAttackTable checks the table itself: names unique and well formed,
// every class known, what each does and must meet written down.
func TestAttackTable(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range attacks {
		if seen[a.name] {
			t.Errorf("attack %q: named twice", a.name)
		}
		seen[a.name] = true
		if a.name == "" || strings.Trim(a.name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || strings.Contains(a.name, "--") {
			t.Errorf("attack %q: want lower-case words joined by single hyphens", a.name)
		}
		if !slices.Contains(classes, a.class) {
			t.Errorf("attack %q: class %q is not one of %v", a.name, a.class, classes)
		}
		if a.does == "" || a.want == "" || a.run == nil {
			t.Errorf("attack %q: want what it does, what must happen and a run", a.name)
		}
	}
	if len(attacks) < 60 {
		t.Errorf("got %d attacks, want at least 60", len(attacks))
	}
}
