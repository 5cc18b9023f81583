package ratelimit

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"

	"google.golang.org/grpc/credentials"
)

// ErrTLS marks a missing TLS configuration: the gRPC port serves mutual
// TLS only, and an ActionLimiter speaks nothing else.
var ErrTLS = errors.New("ratelimit TLS")

// serverConfig returns cfg as the gRPC port serves it: every handshake's
// configuration offers h2, which gRPC clients require. The listener is TLS
// itself (grpc.Server serves it as a plain connection), so nothing else
// adds it.
func serverConfig(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.NextProtos = withH2(c.NextProtos)
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			inner, err := get(hello)
			if err != nil || inner == nil || slices.Contains(inner.NextProtos, "h2") {
				return inner, err
			}
			inner = inner.Clone()
			inner.NextProtos = withH2(inner.NextProtos)
			return inner, nil
		}
	}
	return c
}

func withH2(protos []string) []string {
	if slices.Contains(protos, "h2") {
		return protos
	}
	return append([]string{"h2"}, protos...)
}

// clientCreds are gRPC transport credentials whose TLS configuration is
// asked anew at each handshake: gRPC connections are long-lived, and when
// one reconnects it presents (and verifies) what is current then.
type clientCreds struct{ newTLS func() *tls.Config }

func (c clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.newTLS()).ClientHandshake(ctx, authority, raw)
}

func (clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("ratelimit: client credentials cannot serve")
}

func (clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c clientCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName implements a deprecated method gRPC no longer calls;
// the server name is the TLS configuration's.
func (clientCreds) OverrideServerName(string) error { return nil }
