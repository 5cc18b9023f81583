//go:build linux

package operation_test

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/fraise-dev/fraise/extauthz/operation"
)

// fragmentChain returns a document of n fragments, each spreading the one
// before it, the last spread at the root.
func fragmentChain(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{ ...F%d } fragment F0 on Query { users { id } }", n-1)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, " fragment F%d on Query { ...F%d }", i, i-1)
	}
	return b.String()
}

// fragmentsAtRoot returns a document spreading n fragments at the root.
func fragmentsAtRoot(n int) string {
	var b, f strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, " ...F%d", i)
		fmt.Fprintf(&f, " fragment F%d on Query { users }", i)
	}
	return "{" + b.String() + " }" + f.String()
}

// cpuTime returns the CPU time f took on its thread, with the garbage
// collector off, so that neither the machine's other work nor a collection
// that happens to start during f counts.
func cpuTime(tb testing.TB, f func()) time.Duration {
	tb.Helper()
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
			tb.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := used()
	f()
	return used() - start
}

// TestParseCostsWhatParsingDoes shows that Parse costs a document of many
// fragments what parsing it costs, not the square of its fragments
// (security #13, defect 2, in front of the core): looking each fragment up
// by name among all of them made 5,000 of them cost 11 to 21 times their
// parsing, up to a third of a second of extauthz's time per request; now
// it is 1 to 2.5 times. Both are measured on the same document, in CPU
// time, so the machine's speed and load cancel out.
func TestParseCostsWhatParsingDoes(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{name: "a chain of fragments", doc: fragmentChain(5000)},
		{name: "fragments spread at the root", doc: fragmentsAtRoot(5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The least of runs taken in turns.
			all, parse := time.Duration(1<<62), time.Duration(1<<62)
			for range 7 {
				var g operation.GraphQL
				var err error
				all = min(all, cpuTime(t, func() { g, err = operation.Parse(tt.doc, "") }))
				if err != nil || !slices.Equal(g.RootFields, []string{"users"}) {
					t.Fatalf("got %+v, %v, want the root field users", g, err)
				}
				parse = min(parse, cpuTime(t, func() { _, err = parser.ParseQueryWithTokenLimit(&ast.Source{Input: tt.doc}, operation.MaxTokens) }))
				if err != nil {
					t.Fatal(err)
				}
			}
			if r := float64(all) / float64(parse); r > 5 {
				t.Fatalf("got %.1f times the time of parsing (%s, %s), want about 1", r, all, parse)
			}
		})
	}
}

// BenchmarkParse measures Parse on the largest documents of fragments
// MaxTokens lets through.
func BenchmarkParse(b *testing.B) {
	for _, bb := range []struct {
		name string
		doc  string
	}{
		{"chain-5000", fragmentChain(5000)},
		{"root-5000", fragmentsAtRoot(5000)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(bb.doc)))
			for b.Loop() {
				if _, err := operation.Parse(bb.doc, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
