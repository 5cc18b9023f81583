// Package b64url decodes the unpadded URL-safe base64 of signed tokens
// (Flight tickets, identity assertions) in exactly one spelling.
//
// encoding/base64 skips CR and LF anywhere in its input and, unless
// strict, ignores the unused bits of the last character; either lets one
// signed token be written many ways, which a verifier must not accept.
package b64url

import (
	"encoding/base64"
	"errors"
)

// ErrNotCanonical reports input outside the base64url alphabet or with
// unused bits set.
var ErrNotCanonical = errors.New("not canonical unpadded base64url")

// Valid reports whether s uses only the unpadded base64url alphabet.
func Valid(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Decode decodes s, refusing every spelling but the canonical one.
func Decode(s string) ([]byte, error) {
	if !Valid(s) {
		return nil, ErrNotCanonical
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, ErrNotCanonical
	}
	return b, nil
}
