package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A test binary stops its servers from its cleanups, which a SIGKILL (a
// `timeout`, a cancelled command, CI's limit) skips: the servers would run
// on, each holding memory and a port, until the machine restarts. So every
// server directory names its owner, and the first server a test binary
// starts sweeps away the servers of owners that are gone.

// ownerFile, in a server's directory, holds "<pid> <start>" of the test
// binary that started it: the start time tells a reused pid apart.
const ownerFile = "owner"

// serverPidFile, in a Redis directory, holds redis-server's pid (a
// PostgreSQL directory has its postmaster.pid).
const serverPidFile = "server.pid"

// serverDirPatterns are the directories servers are started in, under
// os.TempDir().
var serverDirPatterns = []string{"fraise-pg-*", "fraise-redis-*"}

var sweepOnce sync.Once

// claim marks dir as this process's.
func claim(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(identity(os.Getpid())+"\n"), 0o644)
}

// identity is pid with its start time, "" when the process does not exist.
func identity(pid int) string {
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return ""
	}
	start := "?"
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// The command is in parentheses and may hold spaces: the fields
		// after its closing parenthesis are fixed, starttime the 20th.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 {
			if f := strings.Fields(string(b)[i+1:]); len(f) > 19 {
				start = f[19]
			}
		}
	}
	return strconv.Itoa(pid) + " " + start
}

// orphaned reports whether dir's owner is gone. A directory without an
// owner file is being set up, or was left by an older harness: not ours
// to judge.
func orphaned(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	owner := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(strings.Fields(owner + " x")[0])
	if err != nil || pid <= 0 {
		return false
	}
	return identity(pid) != owner
}

// sweepOrphans stops the servers whose owners are gone and removes their
// directories, once per test binary.
func sweepOrphans() {
	sweepOnce.Do(func() {
		for _, pattern := range serverDirPatterns {
			dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pattern))
			for _, dir := range dirs {
				if orphaned(dir) {
					killServer(dir)
					_ = os.RemoveAll(dir)
				}
			}
		}
	})
}

// killServer kills the server whose files are in dir: the postmaster's
// process group, or redis-server.
func killServer(dir string) {
	for _, f := range []string{filepath.Join(dir, "data", "postmaster.pid"), filepath.Join(dir, serverPidFile)} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if err != nil || pid <= 1 {
			continue
		}
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
