package lifecycle

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
)

// HTTPServer serves an http.Server on a Listener it owns: Open binds the
// listener, Run serves until its context ends and then shuts the server
// down gracefully within Grace (then closes the connections left), Close
// closes the listener. Server is read at Run, so a component opened after
// the listener may build it.
type HTTPServer struct {
	Listener *Listener
	Server   *http.Server
	// Grace bounds the graceful shutdown: requests in flight finish, new
	// ones are refused.
	Grace time.Duration
	// Serving, when set, is called with the listener as Run starts: the
	// "listening" log line.
	Serving func(net.Listener)
}

// Open binds the listener.
func (s *HTTPServer) Open(ctx context.Context) error { return s.Listener.Open(ctx) }

// Run serves until ctx ends, then shuts down within Grace.
func (s *HTTPServer) Run(ctx context.Context) error {
	ln := s.Listener.Net()
	if s.Serving != nil {
		s.Serving(ln)
	}
	return ServeHTTP(ctx, s.Server, ln, s.Grace)
}

// Close closes the listener.
func (s *HTTPServer) Close() error { return s.Listener.Close() }

// ServeHTTP serves srv on ln (over TLS when srv.TLSConfig is set) until ctx
// ends, then shuts it down gracefully within grace: in-flight requests
// finish, new ones are refused, and those left at grace are cut.
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// GRPCServer serves a grpc.Server on a Listener it owns, as HTTPServer
// does: on stop, a graceful stop within Grace, then a forced one (a long
// call under way is cut rather than awaited).
type GRPCServer struct {
	Listener *Listener
	Server   *grpc.Server
	Grace    time.Duration
	Serving  func(net.Listener)
}

// Open binds the listener.
func (s *GRPCServer) Open(ctx context.Context) error { return s.Listener.Open(ctx) }

// Run serves until ctx ends, then stops within Grace.
func (s *GRPCServer) Run(ctx context.Context) error {
	ln := s.Listener.Net()
	if s.Serving != nil {
		s.Serving(ln)
	}
	return ServeGRPC(ctx, s.Server, ln, s.Grace)
}

// Close stops the server (when Run never did) and closes the listener.
func (s *GRPCServer) Close() error {
	if s.Server != nil {
		s.Server.Stop()
	}
	return s.Listener.Close()
}

// ServeGRPC serves g on ln until ctx ends, then stops gracefully within
// grace and forcibly after.
func ServeGRPC(ctx context.Context, g *grpc.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		g.Stop()
		<-stopped
	}
	<-errc
	return nil
}
