package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// devKeyFiles names the development signing keys `fraise certs` writes.
type devKeyFiles struct {
	AssertionKey, AssertionPub string // extauthz's Ed25519 assertion key
	IssuerKey, IssuerJWKS      string // the development JWT issuer (ES256)
}

func keyFilesIn(dir string) devKeyFiles {
	j := func(n string) string { return filepath.Join(dir, n) }
	return devKeyFiles{
		AssertionKey: j("assertion.key"), AssertionPub: j("assertion.pub"),
		IssuerKey: j("dev-issuer.key"), IssuerJWKS: j("dev-issuer.jwks"),
	}
}

func runCerts(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("certs", env)
	dir := fs.String("dir", ".dev", "directory for certs/ and keys/")
	force := fs.Bool("force", false, "replace existing files")
	hosts := fs.String("hosts", "", "extra comma-separated server certificate names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return writeDevCredentials(*dir, *force, splitList(*hosts), env)
}

// writeDevCredentials writes the development CA and certificates under
// dir/certs and the signing keys under dir/keys, keeping existing ones
// unless force is set, so re-running `make run` never invalidates tokens.
func writeDevCredentials(dir string, force bool, hosts []string, env Env) error {
	certDir := filepath.Join(dir, "certs")
	if force || !devcerts.Exists(certDir) {
		if _, err := devcerts.Generate(certDir, devcerts.Options{Hosts: hosts}); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "wrote development CA and certificates to %s\n", certDir)
	}
	kf := keyFilesIn(filepath.Join(dir, "keys"))
	if !force && exists(kf.AssertionKey) && exists(kf.IssuerKey) && exists(kf.IssuerJWKS) && exists(kf.AssertionPub) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(kf.AssertionKey), 0o700); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	privPEM, err := assertion.MarshalPrivateKeyPEM(priv)
	if err != nil {
		return err
	}
	pubPEM, err := assertion.MarshalPublicKeyPEM(pub)
	if err != nil {
		return err
	}
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ikDER, err := x509.MarshalPKCS8PrivateKey(ik)
	if err != nil {
		return err
	}
	jwks, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &ik.PublicKey, KeyID: issuerKeyID(&ik.PublicKey), Algorithm: "ES256", Use: "sig",
	}}}, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{kf.AssertionKey, privPEM, 0o600},
		{kf.AssertionPub, pubPEM, 0o644},
		{kf.IssuerKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ikDER}), 0o600},
		{kf.IssuerJWKS, jwks, 0o644},
	} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "wrote development signing keys to %s\n", filepath.Dir(kf.AssertionKey))
	return nil
}

// issuerKeyID is the JWK thumbprint of the development issuer's key.
func issuerKeyID(pub *ecdsa.PublicKey) string {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(cryptoSHA256)
	if err != nil {
		return "dev"
	}
	return b64url(tp)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
