package b64url_test

import (
	"testing"

	"github.com/fraise-dev/fraise/internal/b64url"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"aGk", "hi", true},
		{"", "", true},
		{"__8", "\xff\xff", true},
		{"aGk\n", "", false},
		{"a\rGk", "", false},
		{"aGl", "", false}, // unused bits set
		{"aGk=", "", false},
		{"aG+k", "", false},
	}
	for _, tt := range tests {
		got, err := b64url.Decode(tt.in)
		if (err == nil) != tt.ok || tt.ok && string(got) != tt.want {
			t.Errorf("Decode(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
