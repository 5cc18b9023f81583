package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// clientOf names the connection a check came from, as Envoy reports its
// peer: the client certificate (its SHA-256; else the principal Envoy
// derived from it) and the peer's IP address. API key lookups are
// limited per client, so one client sending made-up keys exhausts its
// own allowance, not everyone's. Both parts count: clients behind one
// load balancer share an address but not a certificate, and clients
// sharing a certificate rarely share an address.
func clientOf(src *authv3.AttributeContext_Peer) string {
	var id string
	switch {
	case src.GetCertificate() != "":
		sum := sha256.Sum256([]byte(src.GetCertificate()))
		id = "cert:" + hex.EncodeToString(sum[:16])
	case src.GetPrincipal() != "":
		id = "principal:" + src.GetPrincipal()
	}
	if ip := src.GetAddress().GetSocketAddress().GetAddress(); ip != "" {
		if id != "" {
			id += " "
		}
		id += "ip:" + ip
	}
	return id
}

type sourceKey struct{}

// withSource keeps the check's peer in ctx until a credential needs it,
// so a check that presents none pays nothing for naming its client.
func withSource(ctx context.Context, src *authv3.AttributeContext_Peer) context.Context {
	if src == nil {
		return ctx
	}
	return context.WithValue(ctx, sourceKey{}, src)
}

func source(ctx context.Context) *authv3.AttributeContext_Peer {
	src, _ := ctx.Value(sourceKey{}).(*authv3.AttributeContext_Peer)
	return src
}
