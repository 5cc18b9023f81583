// Package envoytest runs real Envoy for tests: the binary `make deps`
// installs (or one on PATH), on a bootstrap generated from envoy.Build, on
// ports chosen by the kernel, stopped when the test ends.
package envoytest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/process"
)

var (
	binOnce sync.Once
	bin     string
	binErr  error
)

// Bin returns the Envoy binary tests run, failing tb (with what to do) when
// there is none: `make test` installs it first, so a missing Envoy is a
// broken set-up, not a reason to skip.
func Bin(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			binErr = err
			return
		}
		bin, binErr = process.Find(os.Getenv("FRAISE_GATEWAY_ENVOY"), process.RepoRoot(wd))
	})
	if binErr != nil {
		tb.Fatalf("envoy: %v", binErr)
	}
	return bin
}

// Running is an Envoy started for a test.
type Running struct {
	*process.Envoy
	// Addr is the ingress listener's address.
	Addr string
	log  *logBuffer
}

// Start runs Envoy on res's static bootstrap with the listener and admin
// ports chosen by the kernel (res must have been built with port 0 for
// both, or with free ports), waits until it is ready and stops it when tb
// ends. Envoy's output is logged when the test fails.
func Start(tb testing.TB, res *envoy.Resources) *Running {
	tb.Helper()
	b, err := res.Bootstrap()
	if err != nil {
		tb.Fatal(err)
	}
	y, err := envoy.BootstrapYAML(b)
	if err != nil {
		tb.Fatal(err)
	}
	return StartYAML(tb, y)
}

// StartYAML runs Envoy on the bootstrap y (an xDS bootstrap, say); Addr is
// then the ingress listener's address once it exists, "" if it does not yet.
func StartYAML(tb testing.TB, y []byte) *Running {
	tb.Helper()
	log := &logBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := process.Start(ctx, process.Options{
		Bin: Bin(tb), Bootstrap: y, Dir: tb.TempDir(), Concurrency: 1,
		LogLevel: logLevel(), Log: log, Prefix: "envoy: ",
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		e.Stop(10 * time.Second)
		if tb.Failed() {
			tb.Logf("envoy output:\n%s", log.String())
		}
	})
	r := &Running{Envoy: e, log: log}
	if addr, err := e.ListenerAddr(ctx, envoy.ListenerName); err == nil {
		r.Addr = addr
	}
	return r
}

// logLevel is Envoy's log level in tests: warn, or FRAISE_ENVOY_LOG_LEVEL
// (debug, trace) to see why a test fails.
func logLevel() string {
	if l := os.Getenv("FRAISE_ENVOY_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}

// Output is everything Envoy wrote so far: its log and its access log.
func (r *Running) Output() string { return r.log.String() }

type logBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
