package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo stands in for the go command in deploy/dev/fuzz.sh: `go test`
// prints what the mode asks for on each call of a target (counted per
// target in the state directory), so the script's reading of go test's
// output is tested without fuzzing anything.
const fakeGo = `#!/usr/bin/env bash
state=$FAKE_STATE
case "$1" in
env) echo "$state/cache"; exit 0 ;;
list) echo example.com/m; exit 0 ;;
esac
name=$(printf '%s\n' "$@" | sed -n 's/^\^\(Fuzz.*\)\$$/\1/p')
n=$(( $(cat "$state/$name" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$state/$name"
race() { printf 'fuzz: elapsed: 3s, execs: 100 (0/sec)\n--- FAIL: %s (3.04s)\n    context deadline exceeded\nFAIL\nexit status 1\n' "$name"; exit 1; }
case "$FAKE_MODE:$n" in
race-once:1|race-always:*) race ;;
crash:*) printf -- '--- FAIL: %s (0.10s)\n    --- FAIL: %s (0.00s)\n        x_test.go:12: boom\n\n    Failing input written to testdata/fuzz/%s/abc\nFAIL\n' "$name" "$name" "$name"; exit 1 ;;
esac
echo ok
`

// TestFuzzScriptRepeatsOnlyGosDeadlineRace checks that fuzz.sh runs a
// target again when go test's only complaint is Go 1.26's fuzztime race
// (go.dev/issue/75804: "context deadline exceeded", no input written),
// which failed CI once, and still fails on a written input or on the race
// seen twice in a row.
func TestFuzzScriptRepeatsOnlyGosDeadlineRace(t *testing.T) {
	tests := []struct {
		mode    string
		wantErr bool
		want    string
	}{
		{"race-once", false, "running it again"},
		{"race-always", true, "context deadline exceeded"},
		{"crash", true, "Failing input written to"},
		{"pass", false, "targets, 3s each"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			goBin := filepath.Join(dir, "go")
			if err := os.WriteFile(goBin, []byte(fakeGo), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "dev/fuzz.sh")
			cmd.Env = append(os.Environ(), "GO="+goBin, "FAKE_STATE="+dir, "FAKE_MODE="+tt.mode, "FUZZTIME=3s")
			out, err := cmd.CombinedOutput()
			if (err != nil) != tt.wantErr {
				t.Fatalf("fuzz.sh in mode %s: err %v, want error %v\n%s", tt.mode, err, tt.wantErr, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("fuzz.sh in mode %s printed %q, want it to contain %q", tt.mode, out, tt.want)
			}
			if tt.mode == "crash" && strings.Contains(string(out), "running it again") {
				t.Errorf("a written failing input was run again:\n%s", out)
			}
		})
	}
}
