package pyenv_test

import (
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/pyenv"
)

// TestInstalledAsPinned checks that the environment holds each client at
// the version deploy/dev/requirements-python.txt pins.
func TestInstalledAsPinned(t *testing.T) {
	req, err := os.ReadFile("../../deploy/dev/requirements-python.txt")
	if err != nil {
		t.Fatal(err)
	}
	pins := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z0-9-]+)==([^ ]+) `).FindAllStringSubmatch(string(req), -1) {
		pins[m[1]] = m[2]
	}
	var got map[string]string
	pyenv.RunJSON(t, time.Minute, "testdata/versions.py", nil, &got)
	if len(got) == 0 {
		t.Fatal("got no versions")
	}
	for pkg, v := range got {
		if pins[pkg] != v {
			t.Errorf("%s: got %s installed, want %s pinned", pkg, v, pins[pkg])
		}
	}
}
