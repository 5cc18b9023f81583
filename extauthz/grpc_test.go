package extauthz_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/await"
)

// mustGRPC serves f's server through NewGRPCServer and Serve until the
// returned cancel is called; done receives Serve's result.
func mustGRPC(tb testing.TB, f *fixture, o extauthz.GRPCOptions, drain time.Duration) (*grpc.ClientConn, context.CancelFunc, chan error) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	g := f.srv.NewGRPCServer(o)
	go func() { done <- f.srv.Serve(ctx, g, ln, drain, 5*time.Second) }()
	tb.Cleanup(func() { cancel(); g.Stop() })
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn, cancel, done
}

func TestGRPCServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("health service", func(t *testing.T) {
		f := mustFixture(t)
		conn, _, _ := mustGRPC(t, f, extauthz.GRPCOptions{}, 0)
		h := healthpb.NewHealthClient(conn)
		for _, svc := range []string{"", authv3.Authorization_ServiceDesc.ServiceName} {
			resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health %q: got %v, %v, want SERVING", svc, resp, err)
			}
		}
	})

	t.Run("reflection off by default, on when asked", func(t *testing.T) {
		for _, on := range []bool{false, true} {
			f := mustFixture(t)
			conn, _, _ := mustGRPC(t, f, extauthz.GRPCOptions{Reflection: on}, 0)
			stream, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			var resp *reflectpb.ServerReflectionResponse
			if err == nil {
				// A refused stream may fail Send with io.EOF; its status
				// comes from Recv.
				_ = stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}})
				resp, err = stream.Recv()
			}
			if !on {
				if status.Code(err) != codes.Unimplemented {
					t.Errorf("reflection off: got %v, %v, want UNIMPLEMENTED", resp, err)
				}
				continue
			}
			if err != nil || !strings.Contains(resp.String(), "envoy.service.auth.v3.Authorization") {
				t.Errorf("reflection on: got %v, %v, want the services listed", resp, err)
			}
		}
	})

	t.Run("message size limit", func(t *testing.T) {
		f := mustFixture(t)
		conn, _, _ := mustGRPC(t, f, extauthz.GRPCOptions{MaxRecvMsgBytes: 64 << 10}, 0)
		req := graphqlRequest("Bearer "+f.token(t, "viewer"), "{ users { id } }")
		req.Attributes.Request.Http.Body = strings.Repeat("x", 100<<10)
		_, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		f := mustFixture(t)
		conn, cancel, done := mustGRPC(t, f, extauthz.GRPCOptions{}, time.Second)
		client := authv3.NewAuthorizationClient(conn)
		h := healthpb.NewHealthClient(conn)
		req := graphqlRequest("Bearer "+f.token(t, "viewer"), "{ users { id } }")
		if resp, err := client.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("got %v, %v, want allowed", resp, err)
		}
		cancel()
		// During the drain delay the server still answers, but reports
		// NOT_SERVING so Envoy moves away.
		var resp *healthpb.HealthCheckResponse
		var err error
		if !await.Within(2*time.Second, func() bool {
			resp, err = h.Check(ctx, &healthpb.HealthCheckRequest{})
			return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
		}) {
			t.Fatalf("got %v, %v, want NOT_SERVING while draining", resp, err)
		}
		if resp, err := client.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("check while draining: got %v, %v, want still answered", resp, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Serve returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return after shutdown")
		}
	})
}

func TestJWKSHandler(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var signer *assertion.Signer
	f := mustFixture(t, func(o *extauthz.Options) { signer = o.Signer })
	srv := httptest.NewServer(f.srv.JWKSHandler())
	t.Cleanup(srv.Close)
	get := func() map[string]ed25519.PublicKey {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + extauthz.JWKSPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
			t.Fatalf("got %s %q, want 200 application/jwk-set+json", resp.Status, resp.Header.Get("Content-Type"))
		}
		keys, err := assertion.ParseJWKS(b)
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	before := signer.KeyID()
	if keys := get(); len(keys) != 1 || keys[before] == nil {
		t.Fatalf("got %v, want the one signing key %s", keys, before)
	}
	if err := signer.Rotate(priv, assertion.KeyID(pub)); err != nil {
		t.Fatal(err)
	}
	keys := get()
	if len(keys) != 2 || keys[before] == nil || !keys[assertion.KeyID(pub)].Equal(pub) {
		t.Fatalf("got %v, want the new key and the previous one", keys)
	}
	// The core, fed this JWKS, accepts assertions from after the rotation.
	resp := mustCheck(t, f.client, graphqlRequest("Bearer "+f.token(t, "viewer"), "{ users { id } }"))
	a := headerMap(resp.GetOkResponse().GetHeaders())[assertion.Header]
	if _, err := assertion.NewVerifier(keys, clock).Verify(a, assertion.AudienceGraphQL); err != nil {
		t.Fatalf("got %v, want the rotated key's assertion accepted", err)
	}
	r, _ := srv.Client().Post(srv.URL+extauthz.JWKSPath, "text/plain", nil)
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: got %s, want 405", r.Status)
	}
	r.Body.Close()
}
