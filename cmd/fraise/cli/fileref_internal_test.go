package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadFileRef: key files are read from a path, file:// or env://; a
// vault:// reference is refused with the configuration's explanation, not
// mistaken for a path.
func TestReadFileRef(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte("PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return map[string]string{"KEY": "FROM ENV"}[k] }
	for _, tt := range []struct {
		ref, want, wantErr string
	}{
		{ref: path, want: "PEM\n"},
		{ref: "file://" + path, want: "PEM\n"},
		{ref: "env://KEY", want: "FROM ENV"},
		{ref: "env://UNSET", wantErr: "empty or unset"},
		{ref: "vault://secret/fraise#key", wantErr: "not supported by this build"},
		{ref: "file://" + path + ".missing", wantErr: "no such file"},
	} {
		got, err := readFileRef(tt.ref, getenv)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: got %q, %v; want an error saying %q", tt.ref, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || string(got) != tt.want):
			t.Errorf("%s: got %q, %v; want %q", tt.ref, got, err, tt.want)
		}
	}
}
