package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/internal/lifecycle"
)

// serveHTTP serves srv on ln until ctx ends, then shuts it down gracefully
// within grace: in-flight requests finish, new ones are refused.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	return lifecycle.ServeHTTP(ctx, srv, ln, grace)
}

// loadCAPool reads the CA bundle caFile (tls.ca) once.
func loadCAPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w (run `fraise certs`)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.ca: no certificate in %s", caFile)
	}
	return pool, nil
}

// logServing logs where a component listens, the line operators grep for.
func logServing(log *slog.Logger, component, what string, ln net.Listener) {
	log.Info("listening", "component", component, "serves", what, "addr", ln.Addr().String())
}

// stopClock returns how long it has been since ctx ended (zero before):
// a stop line's "took", the time the component spent draining.
func stopClock(ctx context.Context) func() time.Duration {
	var mu sync.Mutex
	var at time.Time
	go func() {
		<-ctx.Done()
		mu.Lock()
		at = time.Now()
		mu.Unlock()
	}()
	return func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		if at.IsZero() {
			return 0
		}
		return time.Since(at).Round(time.Millisecond)
	}
}

// logStopped logs that a component stopped, after draining what drained
// names (its listeners' requests in flight, deliveries under way), the
// line that tells an operator a stop was clean.
func logStopped(log *slog.Logger, component string, drained []string, took time.Duration, err error) {
	if err != nil {
		log.Error("stopped", "component", component, "drained", strings.Join(drained, ", "), "took", took, "err", err)
		return
	}
	log.Info("stopped", "component", component, "drained", strings.Join(drained, ", "), "took", took)
}
