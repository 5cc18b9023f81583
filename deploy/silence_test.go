package deploy_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSilenceReportsWhenTheCommandEnds runs deploy/dev/silence.sh on a
// command that ends before printing the banner: the script still reports
// the longest silence (it read from a coprocess bash unsets on exit).
func TestSilenceReportsWhenTheCommandEnds(t *testing.T) {
	out, err := exec.Command("bash", "dev/silence.sh", "--", "bash", "-c", "echo a; read -t 0.3 <&1; echo b").CombinedOutput()
	if err != nil {
		t.Fatalf("silence.sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "silence: the command ended after") || !strings.Contains(string(out), "longest silence 0.") {
		t.Errorf("got %q, want the longest silence reported", out)
	}
}
