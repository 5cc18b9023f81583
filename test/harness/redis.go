package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Redis is a running throwaway redis-server that keeps nothing on disk.
type Redis struct {
	Addr string
	port int
	dir  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	persist bool
}

// StartRedis starts a dedicated redis-server, stopped when tb ends.
func StartRedis(tb testing.TB) *Redis { return startRedis(tb, false) }

// StartPersistentRedis starts a redis-server that writes every command to
// its append-only file before answering (appendfsync always), so Stop and
// Start lose nothing it acknowledged: a production Redis for observers.
func StartPersistentRedis(tb testing.TB) *Redis { return startRedis(tb, true) }

func startRedis(tb testing.TB, persist bool) *Redis {
	tb.Helper()
	SkipShort(tb)
	dir, err := os.MkdirTemp("", "fraise-redis-")
	if err != nil {
		tb.Fatal(err)
	}
	port := FreePort(tb)
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir, persist: persist}
	if err := r.Start(); err != nil {
		os.RemoveAll(dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		r.Stop()
		os.RemoveAll(dir)
	})
	return r
}

// Start starts the server again on the same port after Stop: chaos tests use
// Stop and Start to take Redis away from a running system and give it back.
func (r *Redis) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	bin, err := findBin("redis-server")
	if err != nil {
		return err
	}
	aof := []string{"--appendonly", "no"}
	if r.persist {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	cmd := exec.Command(bin, append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", r.dir, "--daemonize", "no", "--loglevel", "warning"}, aof...)...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	r.cmd = cmd
	if err := waitFor(10*time.Second, func() error { return dialOK(r.Addr) }); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		r.cmd = nil
		return fmt.Errorf("redis-server did not start on %s: %w", r.Addr, err)
	}
	return nil
}

// Pid is the running redis-server's process id, 0 while it is stopped:
// benchmarks count its CPU as part of the stack they measure.
func (r *Redis) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Stop kills the server; its data is gone, as after a real crash of a Redis
// that keeps nothing on disk.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}
