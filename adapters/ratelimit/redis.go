package ratelimit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	rlredis "github.com/envoyproxy/ratelimit/src/redis"
	"github.com/mediocregopher/radix/v4"
)

// redisClient is the limiter's Redis (envoyproxy/ratelimit's redis.Client)
// on a radix pool of Fraise's own rather than the one envoyproxy/ratelimit
// builds from its settings, whose TLS configuration and password are fixed
// at start. Every new connection is dialled with the TLS configuration and
// password current at that moment, and Reconnect moves commands to a new
// pool, letting the old one finish what it runs and close: a rotated
// certificate or password reaches every connection without a restart.
type redisClient struct {
	addr    string
	size    int
	timeout time.Duration
	newTLS  func() *tls.Config // nil: plaintext
	pass    func() string
	log     *slog.Logger

	mu      sync.RWMutex // guards cur and closed; Reconnect takes it to swap
	cur     *redisPool
	closed  bool
	retrier chan struct{} // closed by Close: stops a Reconnect retrying
}

// redisPool is one radix pool and the commands running on it.
type redisPool struct {
	c       radix.Client
	running sync.WaitGroup
}

var _ rlredis.Client = (*redisClient)(nil)

// newRedisClient connects to Redis at addr and checks it answers PING.
func newRedisClient(ctx context.Context, addr string, size int, timeout time.Duration, newTLS func() *tls.Config, pass func() string, log *slog.Logger) (*redisClient, error) {
	c := &redisClient{addr: addr, size: size, timeout: timeout, newTLS: newTLS, pass: pass, log: log, retrier: make(chan struct{})}
	p, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = p
	return c, nil
}

// netDialer dials TCP and, when the client speaks TLS, the handshake with
// the configuration current at that moment, verifying the server for the
// address's host unless the configuration names another.
type netDialer struct {
	timeout time.Duration
	newTLS  func() *tls.Config
}

func (d netDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: d.timeout}
	if d.newTLS == nil {
		return nd.DialContext(ctx, network, addr)
	}
	cfg := d.newTLS()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		cfg.ServerName = host
	}
	return (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, network, addr)
}

// open opens a new pool and checks that it answers.
func (c *redisClient) open(ctx context.Context) (*redisPool, error) {
	nd := netDialer{timeout: c.timeout, newTLS: c.newTLS}
	cfg := radix.PoolConfig{Size: c.size, Dialer: radix.Dialer{
		CustomConn: func(ctx context.Context, network, addr string) (radix.Conn, error) {
			// AUTH with the password current when this connection opens.
			return radix.Dialer{AuthPass: c.pass(), NetDialer: nd}.Dial(ctx, network, addr)
		},
	}}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	rc, err := cfg.New(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w", c.addr, err)
	}
	var pong string
	if err := rc.Do(ctx, radix.Cmd(&pong, "PING")); err != nil || pong != "PONG" {
		rc.Close()
		return nil, fmt.Errorf("redis at %s: PING: got %q, %v", c.addr, pong, err)
	}
	return &redisPool{c: rc}, nil
}

// Reconnect opens a new pool with the current TLS configuration and
// password and sends commands to it from now on; the previous pool
// finishes the commands it runs and closes. When the new pool cannot
// connect (a password Redis does not accept yet), the current one keeps
// serving and Reconnect tries again every second in the background, until
// it succeeds, another Reconnect starts, or Close.
func (c *redisClient) Reconnect() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("ratelimit: redis client closed")
	}
	close(c.retrier) // stop an earlier Reconnect's retries
	stop := make(chan struct{})
	c.retrier = stop
	c.mu.Unlock()
	err := c.swap()
	if err == nil {
		return nil
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if err := c.swap(); err == nil {
				c.log.Info("rate limiter reconnected to redis with the current credentials")
				return
			}
		}
	}()
	return err
}

// swap opens a new pool and makes it current, closing the previous one
// once its commands finished.
func (c *redisClient) swap() error {
	p, err := c.open(context.Background())
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		p.c.Close()
		return errors.New("ratelimit: redis client closed")
	}
	old := c.cur
	c.cur = p
	c.mu.Unlock()
	go func() {
		old.running.Wait()
		old.c.Close()
	}()
	return nil
}

// do runs a on the current pool.
func (c *redisClient) do(ctx context.Context, a radix.Action) error {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errors.New("ratelimit: redis client closed")
	}
	p := c.cur
	p.running.Add(1)
	c.mu.RUnlock()
	defer p.running.Done()
	return p.c.Do(ctx, a)
}

// DoCmd implements redis.Client.
func (c *redisClient) DoCmd(rcv any, cmd, key string, args ...any) error {
	return c.do(context.Background(), radix.FlatCmd(rcv, cmd, append([]any{key}, args...)...))
}

// PipeAppend implements redis.Client.
func (c *redisClient) PipeAppend(pipeline rlredis.Pipeline, rcv any, cmd, key string, args ...any) rlredis.Pipeline {
	return append(pipeline, rlredis.PipelineAction{Action: radix.FlatCmd(rcv, cmd, append([]any{key}, args...)...), Key: key})
}

// PipeDo implements redis.Client: one round trip for the whole pipeline
// (a single Redis, not a cluster).
func (c *redisClient) PipeDo(pipeline rlredis.Pipeline) error {
	p := radix.NewPipeline()
	for _, a := range pipeline {
		p.Append(a.Action)
	}
	return c.do(context.Background(), p)
}

// Close closes the pool once its commands finished.
func (c *redisClient) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.retrier)
	p := c.cur
	c.mu.Unlock()
	p.running.Wait()
	return p.c.Close()
}

// NumActiveConns implements redis.Client; only envoyproxy/ratelimit's own
// tests read it.
func (c *redisClient) NumActiveConns() int { return c.size }
