package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInitClusterCopiesAClusterMadeBefore: the second cluster made with
// the same initdb and arguments is a copy (initdb runs once), one with
// other arguments is made anew, and each is a whole cluster of its own.
func TestInitClusterCopiesAClusterMadeBefore(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	calls := filepath.Join(tmp, "calls")
	fake := filepath.Join(tmp, "initdb")
	// A stand-in initdb: it records its call and writes what a cluster's
	// directory has that initCluster looks for.
	script := "#!/bin/sh\necho \"$*\" >> " + calls + "\nwhile [ \"$1\" != -D ]; do shift; done\nmkdir -p \"$2\" && echo 17 > \"$2/PG_VERSION\"\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	newCluster := func(name string, extra ...string) string {
		data := filepath.Join(tmp, name, "data")
		if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-D", data, "-U", "postgres"}, extra...)
		if err := initCluster(nil, fake, data, args); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
			t.Fatalf("%s: no cluster: %v", name, err)
		}
		return data
	}
	newCluster("a")
	newCluster("b")
	newCluster("c", "--wal-segsize=1")
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "\n"); got != 2 {
		t.Errorf("initdb ran %d times for two kinds of cluster, want 2:\n%s", got, b)
	}
}
