package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		name        string
		live, floor uint64
		min, want   int
	}{
		{"small live heap raises the percentage to reach the floor", 4 << 20, 64 << 20, 400, 1501},
		{"live heap past the floor keeps the minimum", 100 << 20, 64 << 20, 400, 400},
		{"floor already met by the minimum", 16 << 20, 64 << 20, 400, 400},
		{"no collection yet assumes 1 MiB", 0, 64 << 20, 100, 6301},
		{"tiny live heap is bounded", 1, 1 << 40, 100, 1_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := gcPercentFor(tc.live, tc.floor, tc.min)
			if got != tc.want {
				t.Fatalf("gcPercentFor(%d, %d, %d) = %d, want %d", tc.live, tc.floor, tc.min, got, tc.want)
			}
			if goal := tc.live + tc.live*uint64(got)/100; tc.live > 0 && got < 1_000_000 && goal < tc.floor {
				t.Fatalf("heap goal %d below floor %d", goal, tc.floor)
			}
		})
	}
}

func TestTuneSetsAndRestores(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	stop := Tune(1<<40, 300) // a floor no test heap reaches
	runtime.GC()
	runtime.GC() // the finalizer of the first runs after it; the second sees its effect
	if got := debug.SetGCPercent(-1); got <= 300 {
		t.Errorf("GOGC under the tuner = %d, want above 300 to reach the floor", got)
	}
	debug.SetGCPercent(gcTuner.percent) // put back what the tuner set
	stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC after stop = %d, want 100 restored", got)
	}
}
