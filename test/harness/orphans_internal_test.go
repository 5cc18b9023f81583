package harness

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/await"
)

// TestSweepStopsServersOfKilledTestBinaries: servers whose test binary is
// gone (killed before its cleanups ran) are stopped and their directories
// removed by the next binary that starts a server; servers of a binary
// still running are left alone.
func TestSweepStopsServersOfKilledTestBinaries(t *testing.T) {
	t.Parallel()
	SkipShort(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadOwner := []byte(strconv.Itoa(gone.Process.Pid) + " 1\n")

	orphanPG, err := startPostgres(FreePort(t), PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orphanPG.Stop)
	orphanRedis := StartRedis(t)
	livePG := StartPostgres(t)
	for _, dir := range []string{orphanPG.dir, orphanRedis.dir} {
		if err := os.WriteFile(filepath.Join(dir, ownerFile), deadOwner, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	sweepOnce = sync.Once{}
	sweepOrphans()

	tests := []struct {
		name  string
		addr  string
		dir   string
		alive bool
	}{
		{"orphaned PostgreSQL", net.JoinHostPort(orphanPG.Host, strconv.Itoa(orphanPG.Port)), orphanPG.dir, false},
		{"orphaned Redis", orphanRedis.Addr, orphanRedis.dir, false},
		{"PostgreSQL of a running binary", net.JoinHostPort(livePG.Host, strconv.Itoa(livePG.Port)), livePG.dir, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.alive {
				if err := dialOK(tt.addr); err != nil {
					t.Fatalf("got %v, want the server still answering", err)
				}
				if _, err := os.Stat(tt.dir); err != nil {
					t.Fatalf("got %v, want its directory kept", err)
				}
				return
			}
			if !await.Within(10*time.Second, func() bool { return dialOK(tt.addr) != nil }) {
				t.Fatal("the server still answers, want it stopped")
			}
			if _, err := os.Stat(tt.dir); !os.IsNotExist(err) {
				t.Fatalf("got %v, want its directory removed", err)
			}
		})
	}
}
