package assertion

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"

	"github.com/go-jose/go-jose/v4"
)

// KeyID names pub by its RFC 7638 JWK thumbprint, so extauthz and the core
// agree on key ids without configuring them: the id follows from the key.
func KeyID(pub ed25519.PublicKey) string {
	// The canonical JWK of an Ed25519 key: members in lexical order.
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ParsePrivateKeyPEM parses a PKCS #8 "PRIVATE KEY" PEM block holding an
// Ed25519 key.
func ParsePrivateKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("assertion key: want a PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("assertion key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("assertion key: want Ed25519, got %T", k)
	}
	return ek, nil
}

// ParsePublicKeyPEM parses a PKIX "PUBLIC KEY" PEM block holding an Ed25519
// key.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("assertion public key: want a PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("assertion public key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("assertion public key: want Ed25519, got %T", k)
	}
	return ek, nil
}

// MarshalPrivateKeyPEM encodes key as a PKCS #8 PEM block.
func MarshalPrivateKeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes pub as a PKIX PEM block.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// MarshalJWKS encodes keys (key id to public key) as a JSON Web Key Set of
// OKP Ed25519 keys for EdDSA, sorted by key id.
func MarshalJWKS(keys map[string]ed25519.PublicKey) ([]byte, error) {
	ids := make([]string, 0, len(keys))
	for kid := range keys {
		ids = append(ids, kid)
	}
	sort.Strings(ids)
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(ids))}
	for _, kid := range ids {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: keys[kid], KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"})
	}
	return json.Marshal(set)
}

// ParseJWKS reads the Ed25519 signing keys of a JSON Web Key Set, as
// MarshalJWKS writes it. Keys of other types are skipped; a private key,
// or a key whose id is not its thumbprint (KeyID), is an error: the set
// must not be able to name a key after another.
func ParseJWKS(data []byte) (map[string]ed25519.PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("assertion JWKS: %w", err)
	}
	out := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("assertion JWKS: key %q is not public", k.KeyID)
		}
		pub, ok := k.Key.(ed25519.PublicKey)
		if !ok || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if k.KeyID != KeyID(pub) {
			return nil, fmt.Errorf("assertion JWKS: key id %q is not the key's thumbprint", k.KeyID)
		}
		out[k.KeyID] = pub
	}
	if len(out) == 0 {
		return nil, errors.New("assertion JWKS: no Ed25519 signing keys")
	}
	return out, nil
}

// Keys returns a copy of the keys v trusts now, by key id: what a core
// that goes on to fetch extauthz's published keys keeps trusting
// whatever it fetches (the configured trust anchors).
func (v *Verifier) Keys() map[string]ed25519.PublicKey {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string]ed25519.PublicKey, len(v.keys))
	for kid, pub := range v.keys {
		out[kid] = pub
	}
	return out
}
