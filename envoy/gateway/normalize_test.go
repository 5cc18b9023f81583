package gateway

// An internal test: path normalisation and the text encodings are
// unexported helpers fed straight from untrusted requests, so they are
// fuzzed directly rather than through a whole gateway.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func normalized(tb testing.TB, raw string) (string, bool) {
	tb.Helper()
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return "", false
	}
	g := &Gateway{p: &plan{normalizePath: true, mergeSlashes: true, rejectEscaped: true}}
	r := &http.Request{URL: u}
	if !g.normalizePath(r) {
		return "", false
	}
	return r.URL.Path, true
}

func TestNormalizePath(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
		ok             bool
	}{
		{"plain", "/graphql", "/graphql", true},
		{"dot segments", "/a/./b/../../graphql", "/graphql", true},
		{"above the root", "/../../graphql", "/graphql", true},
		{"merged slashes", "///graphql//x", "/graphql/x", true},
		{"trailing slash kept", "/graphql/", "/graphql/", true},
		{"encoded dots", "/a/%2e%2e/graphql", "/graphql", true},
		{"escaped slash", "/graphql%2f..%2freadyz", "", false},
		{"escaped backslash", "/graphql%5Creadyz", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := normalized(t, tt.in)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("got %q, %v, want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/graphql", "/a/../graphql", "//graphql", "/graphql%2F", "/./.././", "/x/%2e%2e/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, ok := normalized(t, raw)
		if !ok || p == "" {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
			t.Fatalf("%q normalised to %q: want one leading slash and no empty segment", raw, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q normalised to %q, which keeps a dot segment", raw, p)
			}
		}
		if again, _ := normalized(t, (&url.URL{Path: p}).EscapedPath()); again != p {
			t.Fatalf("not idempotent: %q then %q", p, again)
		}
	})
}

func FuzzSanitizeUTF8(f *testing.F) {
	for _, s := range []string{"", "ascii", "caf\xc3\xa9", "\xff\xfe", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := sanitizeUTF8(s)
		if !utf8.ValidString(got) {
			t.Fatalf("sanitizeUTF8(%q) = %q, not UTF-8", s, got)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("sanitizeUTF8 changed valid %q to %q", s, got)
		}
		if len(got) < len(s) {
			t.Fatalf("sanitizeUTF8(%q) = %q lost bytes", s, got)
		}
		enc := grpcPercentEncode(s)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("grpcPercentEncode(%q) = %q has a non-printable byte", s, enc)
			}
		}
		if dec, err := url.PathUnescape(enc); err != nil || dec != s {
			t.Fatalf("grpcPercentEncode(%q) = %q does not decode back (%q, %v)", s, enc, dec, err)
		}
	})
}
