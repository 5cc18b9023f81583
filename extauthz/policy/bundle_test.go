package policy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/extauthz/policy"
)

func mustTarball(tb testing.TB, files map[string]string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(data)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

var minimalBundle = map[string]string{
	"/.manifest":          `{"revision": "r7"}`,
	"/authz.rego":         "package fraise.authz\n\ndefault decision := {\"allow\": false}\n\ndecision := {\"allow\": true} if input.ok\n",
	"/authz_test.rego":    "package fraise.authz_test\n\nimport data.fraise.authz\n\ntest_ok if authz.decision.allow with input as {\"ok\": true}\n",
	"/settings/data.json": `{"label": "from a bundle"}`,
}

func TestReadBundle(t *testing.T) {
	fsys, rev, err := policy.ReadBundle(bytes.NewReader(mustTarball(t, minimalBundle)))
	if err != nil {
		t.Fatal(err)
	}
	if rev != "r7" {
		t.Errorf("got revision %q, want r7", rev)
	}
	b, err := fs.ReadFile(fsys, "data/settings.json")
	if err != nil || !strings.Contains(string(b), "from a bundle") {
		t.Fatalf("got %s, %v, want the data document at data/settings.json", b, err)
	}
	src, err := policy.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Modules) != 1 || len(src.Tests) != 1 || src.Data["settings"] == nil {
		t.Fatalf("got %d modules, %d tests, data %v, want 1, 1 and settings", len(src.Modules), len(src.Tests), src.Data)
	}

	for _, tt := range []struct {
		name string
		tar  []byte
	}{
		{name: "not gzip", tar: []byte("nope")},
		{name: "bad Rego", tar: mustTarball(t, map[string]string{"/a.rego": "package"})},
		{name: "module under data/", tar: mustTarball(t, map[string]string{"/data/x.rego": "package x\n"})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := policy.ReadBundle(bytes.NewReader(tt.tar)); err == nil {
				t.Fatal("got no error, want one")
			}
		})
	}
}

// FuzzReadBundle reads arbitrary bytes as a bundle: an error or a folder,
// never a panic. Seeds are in testdata/fuzz/FuzzReadBundle.
func FuzzReadBundle(f *testing.F) {
	f.Add(mustTarball(f, minimalBundle))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		fsys, _, err := policy.ReadBundle(bytes.NewReader(b))
		if err == nil && fsys == nil {
			t.Fatal("got neither a folder nor an error")
		}
	})
}
