package extauthz

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/fraise-dev/fraise/internal/lifecycle"
)

// DefaultMaxRecvMsgBytes bounds a CheckRequest. Envoy sends at most its
// with_request_body limit (64 KiB by default in Fraise) plus headers, so
// 1 MiB leaves room without letting a client make extauthz buffer more.
const DefaultMaxRecvMsgBytes = 1 << 20

// GRPCOptions configures the gRPC server NewGRPCServer builds.
type GRPCOptions struct {
	// MaxRecvMsgBytes bounds a request message; 0 means
	// DefaultMaxRecvMsgBytes. Larger ones fail with RESOURCE_EXHAUSTED.
	MaxRecvMsgBytes int
	// Reflection registers the gRPC reflection service, for grpcurl during
	// development. Off by default: it describes the server to anyone.
	Reflection bool
	// ServerOptions are added last (interceptors, stats handlers).
	ServerOptions []grpc.ServerOption
}

// NewGRPCServer returns a gRPC server serving s's Authorization service and
// the gRPC health service, with message size limits and keepalive
// enforcement suited to a sidecar that Envoy keeps connections open to.
func (s *Server) NewGRPCServer(o GRPCOptions) *grpc.Server {
	if o.MaxRecvMsgBytes == 0 {
		o.MaxRecvMsgBytes = DefaultMaxRecvMsgBytes
	}
	opts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(o.MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(o.MaxRecvMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Long-lived workers keep the stacks that policy evaluation grew
		// (OPA's evaluator recurses deeply); a fresh goroutine per Check
		// would grow and copy its stack on every request.
		grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0))),
	}, o.ServerOptions...)
	g := grpc.NewServer(opts...)
	s.Register(g)
	if o.Reflection {
		reflection.Register(g)
	}
	return g
}

// Serve serves g on ln until ctx ends, then shuts down gracefully: it
// reports NOT_SERVING on the health service first, so Envoy's health
// checks take this instance out of rotation, waits drainDelay for that to
// happen, then lets in-flight checks finish for up to timeout before
// closing connections (lifecycle.ServeGRPC's stop).
func (s *Server) Serve(ctx context.Context, g *grpc.Server, ln net.Listener, drainDelay, timeout time.Duration) error {
	// The server stops when the drain delay has passed, not when ctx
	// ends: it goes on answering while Envoy moves away.
	stopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	defer context.AfterFunc(ctx, func() {
		s.Drain()
		t := time.NewTimer(drainDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-stopCtx.Done(): // Serve failed and returned meanwhile
		}
		stop()
	})()
	return lifecycle.ServeGRPC(stopCtx, g, ln, timeout)
}

// JWKSPath is where the admin port serves the assertion keys.
const JWKSPath = "/.well-known/jwks.json"

// JWKSHandler serves the public keys the identity assertion is signed
// with, current and previous, as a JSON Web Key Set. The core fetches it
// to verify assertions across key rotations.
func (s *Server) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
			return
		}
		b, err := s.o.Signer.JWKS()
		if err != nil {
			http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		// Short: a verifier that meets an unknown key id refetches anyway.
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(b)
	})
}
