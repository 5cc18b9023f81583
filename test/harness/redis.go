package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Redis is a running throwaway redis-server that keeps nothing on disk.
type Redis struct {
	Addr string
	// TLS is the server's TLS when it was started TLS-only
	// (RedisOptions.TLS), nil otherwise.
	TLS  *ServerTLS
	port int
	dir  string
	opts RedisOptions

	mu  sync.Mutex
	cmd *exec.Cmd
}

// RedisOptions vary a redis-server (StartRedisWith).
type RedisOptions struct {
	// Persist writes every command to the append-only file before
	// answering (appendfsync always), so Stop and Start lose nothing it
	// acknowledged: a production Redis for observers.
	Persist bool
	// TLS makes the server TLS-only (--port 0, --tls-port): a certificate
	// of a CA of its own, and clients must present a certificate of that
	// CA (tls-auth-clients yes).
	TLS bool
	// Password is the default user's password (requirepass); "" for none.
	Password string
}

// StartRedis starts a dedicated redis-server, stopped when tb ends.
func StartRedis(tb testing.TB) *Redis { return StartRedisWith(tb, RedisOptions{}) }

// StartPersistentRedis starts a redis-server that writes every command to
// its append-only file before answering (appendfsync always), so Stop and
// Start lose nothing it acknowledged: a production Redis for observers.
func StartPersistentRedis(tb testing.TB) *Redis {
	return StartRedisWith(tb, RedisOptions{Persist: true})
}

// StartRedisWith starts a dedicated redis-server as o describes, stopped
// when tb ends.
func StartRedisWith(tb testing.TB, o RedisOptions) *Redis {
	tb.Helper()
	SkipShort(tb)
	sweepOrphans()
	dir, err := os.MkdirTemp("", "fraise-redis-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := claim(dir); err != nil {
		os.RemoveAll(dir)
		tb.Fatal(err)
	}
	port := FreePort(tb)
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir, opts: o}
	if o.TLS {
		if r.TLS, err = newServerTLS(filepath.Join(dir, "tls"), "redis", -1, -1); err != nil {
			os.RemoveAll(dir)
			tb.Fatal(err)
		}
	}
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
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--dir", r.dir, "--daemonize", "no", "--loglevel", "warning", "--appendonly", "no"}
	if r.opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if r.TLS != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(r.port),
			"--tls-cert-file", r.TLS.Cert, "--tls-key-file", r.TLS.Key, "--tls-ca-cert-file", r.TLS.CA,
			"--tls-auth-clients", "yes")
	}
	if r.opts.Password != "" {
		args = append(args, "--requirepass", r.opts.Password)
	}
	// The last of a repeated option wins.
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	r.cmd = cmd
	// For the sweep of a later test binary, should this one be killed.
	_ = os.WriteFile(filepath.Join(r.dir, serverPidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
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
