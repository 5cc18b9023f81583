// Package pyenv finds the Python test environment `make deps` installs at
// .tools/python (deploy/dev/python.sh, deploy/dev/requirements-python.txt)
// and runs the repository's Python scripts with it: the clients analysts
// use (pyarrow, the ADBC drivers, DuckDB, ConnectorX), which no one here
// wrote, driven as they drive them.
package pyenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/envoy/process"
)

// Python returns the environment's interpreter. A machine with no python3
// at all cannot have the environment installed: tb is skipped, saying so.
// Anywhere else a missing or stale environment fails tb, naming the
// command that installs it.
func Python(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	root := process.RepoRoot(wd)
	if root == "" {
		tb.Fatalf("pyenv: no repository root above %s", wd)
	}
	py := filepath.Join(root, ".tools", "python", "bin", "python")
	if _, err := os.Stat(py); err != nil {
		if _, err := exec.LookPath("python3"); err != nil {
			tb.Skip("pyenv: no python3 on this machine, so the Python clients (.tools/python) cannot be installed")
		}
		tb.Fatalf("pyenv: the Python test environment is missing (%s): run `make deps` (deploy/dev/python.sh)", py)
	}
	req, err := os.ReadFile(filepath.Join(root, "deploy", "dev", "requirements-python.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(req)
	stamp, _ := os.ReadFile(filepath.Join(root, ".tools", "python", ".requirements.sha256"))
	if strings.TrimSpace(string(stamp)) != hex.EncodeToString(sum[:]) {
		tb.Fatalf("pyenv: .tools/python was installed from another deploy/dev/requirements-python.txt: run `make deps`")
	}
	return py
}

// Run runs script (a path relative to the test's directory) with the
// environment's Python, env added to the test's environment, for at most
// timeout, and returns its standard output. A script that fails fails tb
// with what it wrote to standard error.
func Run(tb testing.TB, timeout time.Duration, script string, env map[string]string) []byte {
	tb.Helper()
	out, err := Start(tb, script, env).Wait(timeout)
	if err != nil {
		tb.Fatalf("python %s: %v", script, err)
	}
	return out
}

// RunJSON is Run decoding the script's standard output, one JSON value,
// into v.
func RunJSON(tb testing.TB, timeout time.Duration, script string, env map[string]string, v any) {
	tb.Helper()
	out := Run(tb, timeout, script, env)
	if err := json.Unmarshal(out, v); err != nil {
		tb.Fatalf("python %s: its output is not the JSON expected (%v):\n%s", script, err, out)
	}
}

// Proc is a running script.
type Proc struct {
	// Cmd is the script's process; Cmd.Process.Pid reads its CPU time
	// from /proc.
	Cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	script string
}

// Start starts script as Run does and returns at once; the process is
// killed when tb ends, if it still runs.
func Start(tb testing.TB, script string, env map[string]string) *Proc {
	tb.Helper()
	py := Python(tb)
	p := &Proc{Cmd: exec.Command(py, "-u", script), script: script}
	p.Cmd.Env = os.Environ()
	for k, v := range env {
		p.Cmd.Env = append(p.Cmd.Env, k+"="+v)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = &p.stdout, &p.stderr
	if err := p.Cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if p.Cmd.ProcessState == nil {
			_ = p.Cmd.Process.Kill()
			_ = p.Cmd.Wait()
		}
	})
	return p
}

// Wait waits for the script to exit, for at most timeout (then kills it),
// and returns its standard output, or an error carrying its standard
// error.
func (p *Proc) Wait(timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = p.Cmd.Process.Kill()
		<-done
		err = ctx.Err()
	}
	if err != nil {
		return p.stdout.Bytes(), &ScriptError{Script: p.script, Err: err, Stderr: p.stderr.String()}
	}
	return p.stdout.Bytes(), nil
}

// ScriptError is a script that failed: its exit and its standard error.
type ScriptError struct {
	Script string
	Err    error
	Stderr string
}

func (e *ScriptError) Error() string { return e.Err.Error() + "\n" + e.Stderr }

// Unwrap returns the exit's error.
func (e *ScriptError) Unwrap() error { return e.Err }
