package cli

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

const cryptoSHA256 = crypto.SHA256

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// tokenRequest is what a development token asserts.
type tokenRequest struct {
	Tenant, Subject string
	Roles, Scopes   []string
	Tier            string
	TTL             time.Duration
}

func runToken(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("token", env)
	dir := fs.String("dir", ".dev", "directory holding keys/dev-issuer.key")
	tenant := fs.String("tenant", "", "tenant id (UUID)")
	subject := fs.String("subject", "", "subject (user id)")
	roles := fs.String("roles", "viewer", "comma-separated roles")
	scopes := fs.String("scopes", "", "comma-separated scopes")
	tier := fs.String("tier", "", "quota tier claim")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tenant == "" || *subject == "" {
		return errors.New("token: --tenant and --subject are required, e.g. fraise token --tenant 11111111-1111-4111-8111-111111111111 --subject alice")
	}
	tok, err := mintDevToken(*dir, tokenRequest{
		Tenant: *tenant, Subject: *subject, Roles: splitList(*roles), Scopes: splitList(*scopes), Tier: *tier, TTL: *ttl,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, tok)
	return nil
}

// mintDevToken signs a JWT with the development issuer key, the one the
// default configuration's issuer trusts through dev-issuer.jwks.
func mintDevToken(dir string, r tokenRequest) (string, error) {
	kf := keyFilesIn(filepath.Join(dir, "keys"))
	data, err := os.ReadFile(kf.IssuerKey)
	if err != nil {
		return "", fmt.Errorf("token: %w (run `fraise certs` first)", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return "", fmt.Errorf("token: %s is not PEM", kf.IssuerKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return "", fmt.Errorf("token: want an ECDSA key, got %T", k)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", issuerKeyID(&key.PublicKey)))
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims := map[string]any{
		"iss": config.DevIssuer, "aud": config.DevAudience, "sub": r.Subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(r.TTL).Unix(),
		"tenant": r.Tenant, "roles": r.Roles,
	}
	if len(r.Scopes) > 0 {
		s := ""
		for i, sc := range r.Scopes {
			if i > 0 {
				s += " "
			}
			s += sc
		}
		claims["scope"] = s
	}
	if r.Tier != "" {
		claims["tier"] = r.Tier
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}
