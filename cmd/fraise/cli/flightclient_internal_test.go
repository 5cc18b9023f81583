package cli

import (
	"bytes"
	"flag"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFlightArguments: flags go before or after the dataset, and the
// output's extension picks the format unless --format says otherwise.
func TestFlightArguments(t *testing.T) {
	for _, tt := range []struct {
		name       string
		args       []string
		wantPos    []string
		wantFormat string
		wantErr    string
	}{
		{"flags first", []string{"--format", "csv", "people.users"}, []string{"people.users"}, "csv", ""},
		{"flags after", []string{"people.users", "--format", "parquet"}, []string{"people.users"}, "parquet", ""},
		{"from the extension", []string{"--output", "x.parquet", "blog.posts"}, []string{"blog.posts"}, "parquet", ""},
		{"csv extension", []string{"blog.posts", "--output", "x.csv"}, []string{"blog.posts"}, "csv", ""},
		{"default", []string{"blog.posts"}, []string{"blog.posts"}, "arrow", ""},
		{"format wins", []string{"--format", "arrow", "--output", "x.csv", "blog.posts"}, []string{"blog.posts"}, "arrow", ""},
		{"bad format", []string{"--format", "xlsx", "blog.posts"}, []string{"blog.posts"}, "", `--format "xlsx": want arrow, parquet or csv`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			ef := newExportFlags(fs)
			pos, err := parseInterspersed(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) {
				t.Errorf("got %v, want %v", pos, tt.wantPos)
			}
			if *ef.output != "-" {
				*ef.output = filepath.Join(t.TempDir(), *ef.output)
			}
			_, format, done, err := ef.open(Env{Stdout: &bytes.Buffer{}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer done()
			if format != tt.wantFormat {
				t.Errorf("got format %s, want %s", format, tt.wantFormat)
			}
		})
	}
}
