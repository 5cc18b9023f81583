// Package harness starts throwaway PostgreSQL and Redis servers for tests:
// each in its own temporary directory on a free loopback port, removed when
// the test (or the test binary) ends, so tests never touch the machine's
// shared databases and never collide with each other.
package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	sharedMu    sync.Mutex
	sharedStops []func()
	// inMain is set while Main runs the tests: shared servers are stopped
	// only by Main, so without it they outlive the test binary.
	inMain bool
)

// Main runs m and then stops every shared server started by SharedPostgres
// or SharedRedis. Use it as `func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }`.
//
// In CI (CI set) and when FRAISE_HOLD_DEV_PORTS is set, Main first holds
// the ports `make run` uses (DevPorts), so a test that binds one fails
// there as it would beside a running stack. Elsewhere it does not, so that
// `make run` can start while tests run.
func Main(m *testing.M) int {
	sharedMu.Lock()
	inMain = true
	sharedMu.Unlock()
	if os.Getenv("CI") != "" || os.Getenv("FRAISE_HOLD_DEV_PORTS") != "" {
		for _, l := range holdDevPorts() {
			defer l.Close()
		}
	}
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, stop := range sharedStops {
		stop()
	}
	sharedStops = nil
	return code
}

func onExit(stop func()) {
	sharedMu.Lock()
	sharedStops = append(sharedStops, stop)
	sharedMu.Unlock()
}

// SkipShort skips tb under `go test -short`: tests that need real servers are
// integration tests, and -short is the fast inner loop.
func SkipShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("integration test: needs real PostgreSQL/Redis (run without -short)")
	}
}

// FreePort returns a loopback TCP port that was free a moment ago. Servers
// that cannot listen on :0 themselves (postgres, redis-server) need one.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// findBin finds a PostgreSQL or Redis program on PATH or in Debian's
// versioned PostgreSQL directory, newest version first.
func findBin(name string) (string, error) { return findBinIn("", name) }

// findBinIn finds program name in dir, or as findBin does when dir is
// empty. A dir without it is an error: the caller asked for those
// programs, and another version would run unnoticed.
func findBinIn(dir, name string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%s not found in %s: %w", name, dir, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s in %s is not an executable file", name, dir)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/lib/postgresql/*/bin (make deps installs it)", name)
}

// waitFor polls ready until it succeeds or d passes.
func waitFor(d time.Duration, ready func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// postgresCredential returns the credential to run PostgreSQL's programs
// with: initdb refuses to run as root, so root runs them as "postgres".
func postgresCredential() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root needs a postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

func run(cred *syscall.Credential, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return nil
}

func dialOK(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// DevPorts are the loopback ports `make run` listens on: every default
// address of fraise.toml, and the development PostgreSQL and Redis. No test
// may bind one of them, so that `make test` passes while `make run` is up.
var DevPorts = []int{8443, 9901, 8080, 9080, 8815, 9191, 9192, 8081, 8082, 6070, 18000, 55432, 56379}

// holdDevPorts binds each of DevPorts that is free for as long as the test
// binary runs, so a test that binds one fails at once, as it would beside a
// running `make run`. It returns the listeners to close.
func holdDevPorts() []net.Listener {
	var held []net.Listener
	for _, p := range DevPorts {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			held = append(held, l)
		}
	}
	return held
}
