package cli

import (
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/cmd/fraise/gctune"
)

// TestCoreHeapFloor checks the core's heap goal floor stays at half the
// heap admission refuses at, so garbage alone never makes it refuse.
func TestCoreHeapFloor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a     config.Admission
		floor uint64
	}{
		{"no memory budget", config.Admission{MemoryThreshold: 0.8}, gctune.DefaultHeapFloor},
		{"a large budget", config.Admission{MemoryLimitBytes: 1 << 30, MemoryThreshold: 0.8}, gctune.DefaultHeapFloor},
		{"a small budget", config.Admission{MemoryLimitBytes: 100 << 20, MemoryThreshold: 0.8}, 40 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := coreHeapFloor(tc.a); got != tc.floor {
				t.Fatalf("got %d, want %d", got, tc.floor)
			}
		})
	}
}
